"""The web console's static files (package data, served by ferry.broker.transport.console).

uPlot (uPlot.iife.min.js, uPlot.min.css, uPlot.LICENSE.txt) is vendored from the npm
registry as published, minified, version and checksums in VENDORED.md; the rest is ours.
"""
