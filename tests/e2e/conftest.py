"""The browser tests' shared fixture: one headless Chromium per test (see test_browser.py)."""
from tests.e2e.test_browser import browser  # noqa: F401  (a fixture, for test_classroom_browser.py too)
