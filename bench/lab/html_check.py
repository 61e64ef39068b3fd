"""python -m bench.lab.html_check REPORT.html [--screenshots DIR]: open a report page in a
real browser (headless Chromium through Playwright) and fail unless it renders clean.

Checks: no console error, page error or failed request; every table has rows; every image
decoded (a broken data URI shows as an image of width 0); at least --min-tables tables and
--min-images images. With --screenshots, writes the page (page.png) and each figure as the
browser drew it (figure-<n>.png) there. Chromium is Debian's (apt-get install chromium), or
BENCH_CHROMIUM names another binary; Playwright downloads no browser of its own here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHROMIUM = os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium")


def check(page_path: Path, min_tables: int, min_images: int, screenshots: Path | None) -> list[str]:
    """What is wrong with the page as Chromium renders it (empty: nothing)."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            tables = page.locator("table")
            if tables.count() < min_tables:
                problems.append(f"{tables.count()} tables, expected at least {min_tables}")
            for i in range(tables.count()):
                if tables.nth(i).locator("tbody tr").count() == 0:
                    problems.append(f"table {i + 1} has no rows")
            images = page.locator("img")
            if images.count() < min_images:
                problems.append(f"{images.count()} images, expected at least {min_images}")
            for i in range(images.count()):
                width = images.nth(i).evaluate("img => img.complete ? img.naturalWidth : 0")
                if not width:
                    problems.append(f"image {i + 1} did not decode")
            if screenshots:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshots / "page.png"), full_page=True)
                for i in range(images.count()):
                    images.nth(i).screenshot(path=str(screenshots / f"figure-{i + 1}.png"))
        finally:
            browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab.html_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--min-tables", type=int, default=1)
    parser.add_argument("--min-images", type=int, default=1)
    parser.add_argument("--screenshots", type=Path, help="write page.png and figure-<n>.png here")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"html_check: error: no Chromium at {CHROMIUM}: apt-get install chromium, or set BENCH_CHROMIUM",
              file=sys.stderr)  # fmt: skip
        return 2
    problems = check(args.page, args.min_tables, args.min_images, args.screenshots)
    for problem in problems:
        print(f"{args.page}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.page}: rendered in Chromium with no error; tables and images present")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
