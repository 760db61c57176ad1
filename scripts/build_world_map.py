#!/usr/bin/env python3
"""Build the web page's world map (`src/dronewatch/api/web/vendor/world.json`) from npm packages.

Inputs, fetched with `npm pack` at pinned versions:

- `world-atlas` (ISC licence; the shapes are Natural Earth 1:110m, public domain):
  `countries-110m.json`, TopoJSON whose ids are ISO 3166-1 numeric codes;
- `i18n-iso-countries` (MIT): `codes.json`, ISO 3166-1 alpha-2 / alpha-3 / numeric codes.

The TopoJSON arcs are delta-decoded and dequantised, projected equirectangularly onto a 360 x 180
box (x = longitude + 180, y = 90 - latitude), and written as one SVG path per country with its
ISO alpha-2 code, name and the centroid of its largest polygon (where the page draws the
destination circles). Same inputs, same output.

Build-only requirement: `npm` on PATH. Usage:

    .venv/bin/python scripts/build_world_map.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "dronewatch" / "api" / "web" / "vendor" / "world.json"
ATLAS = "world-atlas@2.0.2"
CODES = "i18n-iso-countries@7.14.0"

Point = tuple[float, float]


def npm_file(spec: str, member: str, tmp: Path) -> Any:
    """One JSON file out of an npm package tarball."""
    out = (
        subprocess.run(
            ["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(tmp / out) as tar:
        fh = tar.extractfile(f"package/{member}")
        assert fh is not None, f"{member} not in {spec}"
        return json.load(fh)


def decode_arcs(topo: dict[str, Any]) -> list[list[Point]]:
    """Every arc as absolute (longitude, latitude) points."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(indices: list[int], arcs: list[list[Point]]) -> list[Point]:
    """A closed ring from arc indices (~i means arc i reversed); shared end points once."""
    out: list[Point] = []
    for i in indices:
        pts = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        out.extend(pts if not out else pts[1:])
    return out


def project(p: Point) -> Point:
    return (p[0] + 180.0, 90.0 - p[1])


def path_of(polygons: list[list[list[Point]]]) -> str:
    parts = []
    for polygon in polygons:
        for r in polygon:
            pts = [project(p) for p in r]
            cmds = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
            last = cmds[0]
            for x, y in pts[1:]:
                cmd = f"L{x:.1f},{y:.1f}"
                if cmd[1:] != last[1:]:
                    cmds.append(cmd)
                    last = cmd
            parts.append("".join(cmds) + "Z")
    return "".join(parts)


def area_centroid(r: list[Point]) -> tuple[float, float, float]:
    """Signed area and centroid of a ring in projected coordinates."""
    pts = [project(p) for p in r]
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(a) < 1e-9:
        xs, ys = zip(*pts, strict=True)
        return 0.0, sum(xs) / len(xs), sum(ys) / len(ys)
    return a / 2, cx / (3 * a), cy / (3 * a)


def build(tmp: Path) -> dict[str, Any]:
    topo = npm_file(ATLAS, "countries-110m.json", tmp)
    codes = npm_file(CODES, "codes.json", tmp)
    numeric_to_alpha2 = {int(row[2]): row[0] for row in codes}
    arcs = decode_arcs(topo)
    countries = []
    for geom in topo["objects"]["countries"]["geometries"]:
        if geom.get("type") not in ("Polygon", "MultiPolygon") or "id" not in geom:
            continue
        alpha2 = numeric_to_alpha2.get(int(geom["id"]))
        if alpha2 is None:
            continue
        raw = geom["arcs"] if geom["type"] == "MultiPolygon" else [geom["arcs"]]
        polygons = [[ring(r, arcs) for r in poly] for poly in raw]
        largest = max((area_centroid(poly[0]) for poly in polygons), key=lambda t: abs(t[0]))
        countries.append(
            {
                "iso2": alpha2,
                "name": geom.get("properties", {}).get("name", alpha2),
                "d": path_of(polygons),
                "cx": round(largest[1], 1),
                "cy": round(largest[2], 1),
            }
        )
    countries.sort(key=lambda c: c["iso2"])
    return {
        "viewBox": "0 0 360 180",
        "projection": "equirectangular: x = longitude + 180, y = 90 - latitude",
        "source": {
            "shapes": f"{ATLAS} countries-110m.json (Natural Earth 1:110m, public domain; "
            "package ISC licence)",
            "codes": f"{CODES} codes.json (MIT licence)",
            "attribution": "Made with Natural Earth. Free vector and raster map data @ "
            "naturalearthdata.com",
        },
        "countries": countries,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        doc = build(Path(tmp))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    print(
        f"{OUT.relative_to(ROOT)}: {len(doc['countries'])} countries, "
        f"{OUT.stat().st_size / 1024:.0f} KB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
