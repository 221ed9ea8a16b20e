//! The interactive `memtrace top`: a ratatui view over the crossterm backend. Each interval the
//! sampler's snapshot (with the GPUs joined) and one look at the guard ([`GuardSource`]) go into
//! the pure [`state::App`]; keys ([`input`]) change its sort, filter and tree; [`view`] draws it.
//! A thread reads the terminal's events and hands them over; `q`, Ctrl-C, SIGTERM, SIGHUP and
//! SIGINT end the loop, and [`terminal::Session`] restores the terminal on every way out, a panic
//! included.
mod input;
mod state;
mod terminal;
mod view;

use std::io;

use anyhow::Context as _;
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::event::{self, Event},
};
use tokio::signal::unix::{SignalKind, signal};

use super::{TopConfig, held::GuardSource};
use crate::{
    cmd::status::limit_line,
    collect::{sampler::Sampler, scope::Selected},
};

/// Runs the view until a key, a signal or an error ends it. `limited`: the cgroup whose limit
/// binds memtrace (a container), shown first in the header.
pub async fn live(
    sampler: &mut Sampler,
    guard: &mut dyn GuardSource,
    limited: Option<&Selected>,
    config: &TopConfig,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    // The first snapshot only sets the base of the rates.
    sampler.sample()?;
    let mut app = state::App::new(sampler.kind());
    let session = terminal::Session::enter().context("setting up the terminal")?;
    // Log lines would land in the middle of the view: only errors are written while it runs.
    let log_level = log::max_level();
    log::set_max_level(log::LevelFilter::Error.min(log_level));
    let mut term =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("setting up the terminal")?;
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    // Blocks in `read` for the process's lifetime; it ends when the loop below is gone.
    std::thread::Builder::new()
        .name("top-keys".to_owned())
        .spawn(move || {
            while let Ok(event) = event::read() {
                if keys_tx.send(event).is_err() {
                    break;
                }
            }
        })
        .context("starting the key reader")?;
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        term.draw(|frame| view::draw(frame, &app))
            .context("drawing")?;
        tokio::select! {
            _ = ticker.tick() => {
                let snapshot = sampler.sample()?;
                app.limit = limited.and_then(limit_of);
                app.update(snapshot, guard.look());
            }
            event = keys.recv() => match event {
                Some(Event::Key(key)) => {
                    if let Some(action) = input::action(key, app.editing.is_some()) {
                        app.apply(action);
                    }
                }
                Some(Event::Resize(..)) => {
                    term.autoresize().context("resizing")?;
                }
                Some(_) => {}
                // The terminal is gone.
                None => break,
            },
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
            _ = interrupt.recv() => break,
        }
        if app.quit {
            break;
        }
    }
    drop(session);
    log::set_max_level(log_level);
    Ok(())
}

/// The `Limit: …` line of `selected` now; `None` when its usage cannot be read.
fn limit_of(selected: &Selected) -> Option<String> {
    let usage = selected.scope.usage(std::path::Path::new("/proc")).ok()?;
    limit_line(&selected.report(Some(&usage))).map(|line| line.trim_end().to_owned())
}
