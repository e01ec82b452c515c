"""A private Knot DNS instance for the benchmarks: its configuration and zone file."""
import os


def write_config(directory, port, zone, records, rrl=None):
    """Writes knot.conf and the zone file for `zone` (with SOA, NS and `records`, zone-file
    lines) under `directory`; `rrl` = (rate-limit, slip) adds Knot's RRL module to every
    zone. Returns the configuration's path."""
    for sub in ("zones", "run", "db"):
        os.makedirs(os.path.join(directory, sub))
    module = ""
    template_module = ""
    if rrl:
        rate, slip = rrl
        module = f"""mod-rrl:
  - id: default
    rate-limit: {rate}
    slip: {slip}
"""
        template_module = "    global-module: mod-rrl/default\n"
    conf = os.path.join(directory, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    rundir: "{directory}/run"
    listen: 127.0.0.1@{port}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{directory}/db"
{module}template:
  - id: default
    storage: "{directory}/zones"
{template_module}zone:
  - domain: {zone}
    file: {zone}.zone
""")
    with open(os.path.join(directory, "zones", f"{zone}.zone"), "w") as f:
        f.write(f"$ORIGIN {zone}.\n@ 300 SOA ns1 h 1 3600 600 1209600 60\n@ 300 NS ns1\n"
                f"ns1 300 A 192.0.2.53\n" + "".join(line + "\n" for line in records))
    return conf
