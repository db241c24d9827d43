"""The eleven RC2 PipelineTasks (classes, connections and configs).

One module per task; labels and dataset type names follow DESIGN.md:

========================  =========================================================
label                     class
========================  =========================================================
isr                       :class:`rc2_platform.tasks.isr.IsrTask`
characterizeImage         :class:`rc2_platform.tasks.characterize_image.CharacterizeImageTask`
calibrate                 :class:`rc2_platform.tasks.calibrate.CalibrateTask`
makeWarp                  :class:`rc2_platform.tasks.make_warp.MakeWarpTask`
assembleCoadd             :class:`rc2_platform.tasks.assemble_coadd.AssembleCoaddTask`
detection                 :class:`rc2_platform.tasks.detect_coadd.DetectCoaddSourcesTask`
mergeDetections           :class:`rc2_platform.tasks.merge_detections.MergeDetectionsTask`
deblend                   :class:`rc2_platform.tasks.deblend.DeblendCoaddSourcesTask`
measure                   :class:`rc2_platform.tasks.measure.MeasureMergedCoaddSourcesTask`
mergeMeasurements         :class:`rc2_platform.tasks.merge_measurements.MergeMeasurementsTask`
forcedPhotCoadd           :class:`rc2_platform.tasks.forced_phot_coadd.ForcedPhotCoaddTask`
========================  =========================================================

The pure image-processing functions live in :mod:`rc2_platform.tasks.algorithms`;
the ``run`` methods here wire them to the connections (issue 6 fills them in).
This package module imports nothing so that loading one task stays cheap.
"""
