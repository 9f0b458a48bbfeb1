"""Local stand-in for the parts of api.weather.gov that the weather example backend uses.

From pytest::

    with serve_weather_standin() as base_url:
        env = {"WEATHER_API_BASE": base_url}

From a shell: ``python weather_standin.py PORT`` serves until killed and prints nothing.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FORECAST_PATH = "/gridpoints/TST/10,20/forecast"
POINT_PATH = re.compile(r"^/points/(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$")

ALERTS: dict[str, list[dict[str, Any]]] = {
    "CA": [
        {
            "event": "Heat Advisory",
            "severity": "Moderate",
            "headline": "Heat Advisory issued for Sacramento Valley",
            "areaDesc": "Sacramento Valley; Northern San Joaquin Valley",
            "description": "Temperatures up to 108 expected.",
            "instruction": "Drink plenty of fluids and stay out of the sun.",
        },
        {
            "event": "Red Flag Warning",
            "severity": "Severe",
            "headline": "Red Flag Warning issued for Los Angeles County Mountains",
            "areaDesc": "Los Angeles County Mountains",
            "description": "Gusty winds and low humidity will create critical fire weather.",
            "instruction": None,
        },
    ],
    "TX": [
        {
            "event": "Flash Flood Warning",
            "severity": "Severe",
            "headline": "Flash Flood Warning issued for Travis County",
            "areaDesc": "Travis, TX",
            "description": "Up to 4 inches of rain have fallen. Flash flooding is ongoing.",
            "instruction": "Turn around, don't drown.",
        },
        {
            "event": "Wind Advisory",
            "severity": "Minor",
            "headline": "Wind Advisory issued for the Texas Panhandle",
            "areaDesc": "Potter; Randall",
            "description": "South winds 25 to 35 mph with gusts up to 50 mph.",
            "instruction": "Secure outdoor objects.",
        },
    ],
}

PERIODS = [
    ("Tonight", 58, "5 mph", "SW", "Mostly Clear"),
    ("Tuesday", 77, "5 to 10 mph", "W", "Sunny"),
    ("Tuesday Night", 56, "5 mph", "NW", "Partly Cloudy"),
    ("Wednesday", 71, "10 mph", "N", "Chance Showers"),
    ("Wednesday Night", 50, "10 to 15 mph", "N", "Showers Likely"),
    ("Thursday", 64, "5 mph", "NE", "Mostly Sunny"),
    ("Thursday Night", 49, "5 mph", "E", "Clear"),
]


def _alerts_body(area: str) -> dict[str, Any]:
    features = [
        {"type": "Feature", "properties": props} for props in ALERTS.get(area.upper(), [])
    ]
    return {"type": "FeatureCollection", "features": features, "title": f"Alerts for {area}"}


def _point_body(base: str, lat: float, lon: float) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {
            "gridId": "TST",
            "gridX": 10,
            "gridY": 20,
            "forecast": base + FORECAST_PATH,
            "relativeLocation": {
                "type": "Feature",
                "properties": {"city": "Testville", "state": "CA"},
            },
        },
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
    }


def _forecast_body() -> dict[str, Any]:
    periods = [
        {
            "number": number,
            "name": name,
            "temperature": temperature,
            "temperatureUnit": "F",
            "windSpeed": wind_speed,
            "windDirection": wind_direction,
            "shortForecast": short,
            "detailedForecast": f"{short}, with a temperature around {temperature}.",
        }
        for number, (name, temperature, wind_speed, wind_direction, short) in enumerate(
            PERIODS, 1
        )
    ]
    return {"type": "Feature", "properties": {"periods": periods}}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        url = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        base = f"http://{host}:{port}"
        if url.path == "/alerts/active":
            area = parse_qs(url.query).get("area", [""])[0]
            self._send(200, _alerts_body(area))
        elif url.path == FORECAST_PATH:
            self._send(200, _forecast_body())
        elif match := POINT_PATH.match(url.path):
            lat, lon = float(match[1]), float(match[2])
            # The real API only covers US territory; 0,0 style points answer 404 there too.
            if 15 <= lat <= 72 and -180 <= lon <= -60:
                self._send(200, _point_body(base, lat, lon))
            else:
                self._problem(404, f"Unable to provide data for requested point {lat},{lon}")
        else:
            self._problem(404, f"'{url.path}' is not a valid resource path")

    def _problem(self, status: int, detail: str) -> None:
        body = {"title": "Not Found", "status": status, "detail": detail}
        self._send(status, body, "application/problem+json")

    def _send(self, status: int, body: dict[str, Any], ctype: str = "application/geo+json") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Silence per-request access logs; they would clutter test output.
        pass


def make_server(port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    return server


@contextmanager
def serve_weather_standin() -> Iterator[str]:
    """Serve the stand-in on a free 127.0.0.1 port in a background thread; yield its base URL."""
    server = make_server()
    # shutdown() waits for the serve loop's next poll; a short interval keeps teardown fast.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="weather-standin", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not argv[0].isdigit():
        raise SystemExit("usage: python weather_standin.py PORT")
    with make_server(int(argv[0])) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
