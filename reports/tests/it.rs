//! The renderings of a run report, end to end: Markdown and JUnit content, the `report`
//! binary, and the HTML page as headless Chromium draws it. One test binary (one link) for
//! all of them; the modules live under `tests/it/`.

#[path = "it/browser.rs"]
mod browser;
#[path = "it/cli.rs"]
mod cli;
#[path = "it/fixtures.rs"]
mod fixtures;
#[path = "it/junit.rs"]
mod junit;
#[path = "it/markdown.rs"]
mod markdown;
