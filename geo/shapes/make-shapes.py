#!/usr/bin/env python3
"""Country shapes for the status page, from Natural Earth via the npm package world-atlas.

Usage: make-shapes.py WORLD_ATLAS_DIR ISO_CODES_JSON > countries.json

  npm pack world-atlas          # TopoJSON of Natural Earth 1:50m admin-0 countries (public domain)
  npm pack i18n-iso-countries   # codes.json: ISO 3166 numeric -> alpha-2 (used here only)
  tar xzf world-atlas-*.tgz && tar xzf i18n-iso-countries-*.tgz ...

Writes {"width": W, "height": H, "countries": {"JP": {"name": "Japan", "d": "M..."}}}:
SVG paths in an equirectangular projection, x = (lon + 180) * SCALE, y = (LAT_TOP - lat) *
SCALE, rounded to 0.1 unit, relative moves to keep the file small. The server embeds the
result; nothing is fetched at run time.
"""
import json
import sys

SCALE = 2.0
LAT_TOP = 84.0
LAT_BOTTOM = -58.0  # Antarctica is cut: no clients live there

# Features the numeric standard does not code, by their Natural Earth name.
BY_NAME = {"Kosovo": "XK", "N. Cyprus": None, "Somaliland": None}


def main():
    atlas_dir, codes_path = sys.argv[1], sys.argv[2]
    topo = json.load(open(f"{atlas_dir}/countries-50m.json"))
    numeric = {n: a2 for a2, _a3, n, _ in json.load(open(codes_path))}
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)

    def ring(indexes):
        points = []
        for i in indexes:
            arc = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
            points.extend(arc if not points else arc[1:])
        return points

    def project(lon, lat):
        lat = max(min(lat, LAT_TOP), LAT_BOTTOM)
        return round((lon + 180) * SCALE * 10), round((LAT_TOP - lat) * SCALE * 10)

    def path(polygons):
        out = []
        for polygon in polygons:
            for indexes in polygon:
                points = ring(indexes)
                # A ring across the antimeridian (Russia's Chukotka, Fiji) is drawn whole on
                # the side where most of it lies; the part past the edge is clipped.
                if any(abs(b[0] - a[0]) > 180 for a, b in zip(points, points[1:])):
                    east = sum(lon for lon, _ in points) > 0
                    points = [(lon + 360 if east and lon < 0 else lon - 360 if not east and lon > 0 else lon, lat)
                              for lon, lat in points]
                projected = []
                for lon, lat in points:
                    p = project(lon, lat)
                    if not projected or p != projected[-1]:
                        projected.append(p)
                if len(projected) < 3:
                    continue
                x0, y0 = projected[0]
                parts = [f"M{x0 / 10:g} {y0 / 10:g}l"]
                px, py = x0, y0
                steps = []
                for x, y in projected[1:]:
                    steps.append(f"{(x - px) / 10:g} {(y - py) / 10:g}")
                    px, py = x, y
                out.append(parts[0] + " ".join(steps) + "z")
        return "".join(out)

    countries = {}
    for geometry in topo["objects"]["countries"]["geometries"]:
        name = geometry.get("properties", {}).get("name", "")
        code = numeric.get(geometry.get("id")) if "id" in geometry else BY_NAME.get(name)
        if code is None or name == "Antarctica":
            continue
        if geometry["type"] == "Polygon":
            polygons = [geometry["arcs"]]
        elif geometry["type"] == "MultiPolygon":
            polygons = geometry["arcs"]
        else:
            continue
        d = path(polygons)
        if not d:
            continue
        if code in countries:
            countries[code]["d"] += d
        else:
            countries[code] = {"name": name, "d": d}
    json.dump(
        {
            "width": 360 * SCALE,
            "height": (LAT_TOP - LAT_BOTTOM) * SCALE,
            "source": "Natural Earth 1:50m admin-0 countries (public domain), via the npm package world-atlas 2.0.2",
            "countries": dict(sorted(countries.items())),
        },
        sys.stdout,
        separators=(",", ":"),
    )


main()
