#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, trust auth) and MariaDB (127.0.0.1:3306, root without
# password) are running and reachable. Installs them from Debian's packages on a machine that
# lacks them, starts them if they are down, and waits until they answer.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if ! have pg_ctlcluster || ! have mariadbd && ! [ -x /usr/sbin/mariadbd ]; then
  echo "installing postgresql and mariadb-server from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql mariadb-server >/dev/null
fi

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
fi

maria_up() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root status >/dev/null 2>&1; }
if ! maria_up; then
  echo "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql || true
fi

for _ in $(seq 1 60); do
  if pg_up && maria_up; then break; fi
  sleep 1
done
pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }
maria_up || { echo "MariaDB did not come up on 127.0.0.1:3306"; exit 1; }

# A fresh server may lack the roles/databases the tests use; create them idempotently.
if ! psql -h 127.0.0.1 -U root -d postgres -tAc "select 1" >/dev/null 2>&1; then
  su postgres -c "psql -c \"CREATE ROLE root SUPERUSER LOGIN\"" || true
fi
psql -h 127.0.0.1 -U root -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U root -d postgres -c "CREATE DATABASE test"
mysql --protocol=tcp -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"
echo "PostgreSQL and MariaDB are up"
