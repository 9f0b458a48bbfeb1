"""US weather backend for mcp-gateway examples, backed by the public api.weather.gov API.

Run over stdio: ``python weather_server.py``. ``WEATHER_API_BASE`` points it at another base URL
(a local stand-in in tests); ``WEATHER_TIMEOUT`` sets the per-request timeout in seconds.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

import httpx2
from pydantic import Field

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

PUBLIC_BASE = "https://api.weather.gov"
# api.weather.gov rejects requests without a User-Agent and asks for one that identifies the app.
USER_AGENT = "mcp-gateway-weather-example/0.1 (example backend of mcp-gateway)"
DESCRIPTION_CHARS = 600
FORECAST_PERIODS = 6
STATE_CODE = re.compile(r"^[A-Za-z]{2}$")


class WeatherApi:
    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/geo+json"},
            follow_redirects=True,
        )

    def on_base(self, url: str) -> str:
        # The API returns absolute links to itself; keep following them on the configured base
        # so that a stand-in or proxy also serves the second hop.
        if self.base != PUBLIC_BASE and url.startswith(PUBLIC_BASE):
            return self.base + url[len(PUBLIC_BASE):]
        return url

    async def get_json(self, client: httpx2.AsyncClient, url: str) -> dict[str, Any]:
        try:
            response = await client.get(url)
        except httpx2.TimeoutException as exc:
            raise ToolError(
                f"{url} did not answer within {self.timeout:g}s ({type(exc).__name__}): try again "
                "later, raise WEATHER_TIMEOUT, or set WEATHER_API_BASE"
            ) from exc
        except httpx2.RequestError as exc:
            raise ToolError(
                f"could not reach {url} ({type(exc).__name__}: {exc}): check the network or "
                "set WEATHER_API_BASE"
            ) from exc
        if not response.is_success:
            raise ToolError(f"{url} answered HTTP {response.status_code}{self._advice(response)}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise ToolError(f"{url} did not return JSON; is WEATHER_API_BASE right?") from exc
        if not isinstance(payload, dict):
            raise ToolError(f"{url} returned unexpected JSON (not an object)")
        return payload

    def _advice(self, response: httpx2.Response) -> str:
        if response.status_code >= 500:
            return f"{_problem(response)}: the weather service is having trouble, try again later"
        # api.weather.gov explains its own 4xx answers; anything else is likely the wrong host.
        return _problem(response) or f": is WEATHER_API_BASE ({self.base}) right?"

    async def alerts(self, state: str) -> dict[str, Any]:
        if not STATE_CODE.fullmatch(state):
            raise ToolError(f"state must be a two-letter US state code such as 'CA', got {state!r}")
        area = state.upper()
        async with self._client() as client:
            payload = await self.get_json(client, f"{self.base}/alerts/active?area={area}")
        features = payload.get("features") or []
        alerts = [_alert(feature.get("properties") or {}) for feature in features]
        return {"state": area, "count": len(alerts), "alerts": alerts}

    async def forecast(self, latitude: float, longitude: float) -> dict[str, Any]:
        async with self._client() as client:
            point_url = f"{self.base}/points/{latitude:.4f},{longitude:.4f}"
            point = await self.get_json(client, point_url)
            props = point.get("properties") or {}
            forecast_url = props.get("forecast")
            if not forecast_url:
                raise ToolError(
                    f"no forecast is available for {latitude:.4f},{longitude:.4f}; "
                    "only locations in the United States are covered"
                )
            forecast = await self.get_json(client, self.on_base(forecast_url))
        periods = (forecast.get("properties") or {}).get("periods") or []
        return {
            "latitude": latitude,
            "longitude": longitude,
            "location": _location(props),
            "periods": [_period(p) for p in periods[:FORECAST_PERIODS]],
        }


def _problem(response: httpx2.Response) -> str:
    # The API reports errors as application/problem+json with a human-readable "detail".
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f": {detail}" if detail else ""


def _trim(text: str | None, limit: int = DESCRIPTION_CHARS) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _alert(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": props.get("event"),
        "severity": props.get("severity"),
        "headline": props.get("headline"),
        "area_desc": props.get("areaDesc"),
        "description": _trim(props.get("description")),
        "instruction": _trim(props.get("instruction")),
    }


def _location(point_props: dict[str, Any]) -> dict[str, Any] | None:
    relative = (point_props.get("relativeLocation") or {}).get("properties") or {}
    if not relative:
        return None
    return {"city": relative.get("city"), "state": relative.get("state")}


def _period(period: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": period.get("name"),
        "temperature": period.get("temperature"),
        "temperature_unit": period.get("temperatureUnit"),
        "wind_speed": period.get("windSpeed"),
        "wind_direction": period.get("windDirection"),
        "short_forecast": period.get("shortForecast"),
        "detailed_forecast": period.get("detailedForecast"),
    }


def build_server(api: WeatherApi) -> FastMCP:
    mcp = FastMCP(
        "weather",
        instructions="US weather from the National Weather Service: active alerts and forecasts.",
    )
    read_only = {"readOnlyHint": True, "openWorldHint": True}

    @mcp.tool(annotations=read_only)
    async def get_alerts(
        state: Annotated[
            str, Field(description="Two-letter US state code, e.g. 'CA' or 'tx'.")
        ],
    ) -> dict[str, Any]:
        """Get the weather alerts currently active in a US state. Returns state, count and
        alerts (event, severity, headline, area_desc, description, instruction)."""
        return await api.alerts(state)

    @mcp.tool(annotations=read_only)
    async def get_forecast(
        latitude: Annotated[float, Field(ge=-90, le=90, description="Latitude in degrees.")],
        longitude: Annotated[float, Field(ge=-180, le=180, description="Longitude in degrees.")],
    ) -> dict[str, Any]:
        """Get the forecast for a location in the United States. Returns the nearest city/state
        (location) and the next periods (name, temperature, temperature_unit, wind_speed,
        wind_direction, short_forecast, detailed_forecast), up to six half-day periods."""
        return await api.forecast(latitude, longitude)

    return mcp


def api_from_env() -> WeatherApi:
    base = os.environ.get("WEATHER_API_BASE") or PUBLIC_BASE
    raw_timeout = os.environ.get("WEATHER_TIMEOUT") or "10"
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise SystemExit(f"WEATHER_TIMEOUT must be a number of seconds, got {raw_timeout!r}")
    return WeatherApi(base, timeout)


if __name__ == "__main__":
    build_server(api_from_env()).run(show_banner=False)
