"""The GPU telemetry query API (aiohttp): what the collectors stored, by GPU and time."""
