//! Keys of the interactive view → [`Action`]s. While the `/` filter is being typed, printable
//! keys go into it (Enter applies, Esc cancels); otherwise each key below does one thing, and the
//! footer ([`KEYS`]) lists them. Ctrl-C quits in both modes (the terminal is in raw mode, so it
//! arrives as a key, not as SIGINT).
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::Column;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave, restoring the terminal.
    Quit,
    /// Sort by this column (again: reverse the order).
    SortBy(Column),
    /// Sort by the next column to the right.
    SortNext,
    /// Sort by the next column to the left.
    SortPrev,
    /// Reverse the order.
    Reverse,
    /// Flat table ↔ tree.
    ToggleTree,
    /// Open the filter prompt.
    StartFilter,
    /// Type into the filter.
    FilterChar(char),
    /// Delete the filter's last character.
    FilterBackspace,
    /// Apply the filter typed (empty: no filter).
    FilterApply,
    /// Close the prompt, keeping the filter in force.
    FilterCancel,
    /// Drop the filter in force.
    ClearFilter,
    /// Selection up one row.
    Up,
    /// Selection down one row.
    Down,
    /// Selection up a page.
    PageUp,
    /// Selection down a page.
    PageDown,
    /// First row.
    Home,
    /// Last row.
    End,
}

/// The footer's key help.
pub const KEYS: &str = "q quit  / filter  Esc clear  t tree  < > sort column  r reverse  \
     sort: p pid  c cmd  m rss  g growth  f faults  s swap  u gpu  ↑↓ PgUp PgDn move";

/// The action of `key`; `editing`: the filter prompt is open. Releases and repeats of
/// terminals that report them are ignored, as are keys that do nothing.
pub fn action(key: KeyEvent, editing: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return Some(Action::Quit);
    }
    if editing {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterApply),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    if ctrl {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('q' | 'Q') => Action::Quit,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Esc => Action::ClearFilter,
        KeyCode::Char('t' | 'T') => Action::ToggleTree,
        KeyCode::Char('<' | ',') | KeyCode::Left => Action::SortPrev,
        KeyCode::Char('>' | '.') | KeyCode::Right => Action::SortNext,
        KeyCode::Char('r' | 'R') => Action::Reverse,
        KeyCode::Char('p') => Action::SortBy(Column::Pid),
        KeyCode::Char('c') => Action::SortBy(Column::Command),
        KeyCode::Char('m') => Action::SortBy(Column::Rss),
        KeyCode::Char('g') => Action::SortBy(Column::Growth),
        KeyCode::Char('f') => Action::SortBy(Column::Faults),
        KeyCode::Char('s') => Action::SortBy(Column::Swap),
        KeyCode::Char('u') => Action::SortBy(Column::Gpu),
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    //! The key map in both modes.
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(key(KeyCode::Char('q')), false), Some(Action::Quit));
        assert_eq!(action(ctrl('c'), false), Some(Action::Quit));
        assert_eq!(
            action(ctrl('c'), true),
            Some(Action::Quit),
            "also while typing"
        );
        assert_eq!(
            action(key(KeyCode::Char('/')), false),
            Some(Action::StartFilter)
        );
        assert_eq!(
            action(key(KeyCode::Char('m')), false),
            Some(Action::SortBy(Column::Rss))
        );
        assert_eq!(
            action(key(KeyCode::Char('>')), false),
            Some(Action::SortNext)
        );
        assert_eq!(
            action(key(KeyCode::Char('t')), false),
            Some(Action::ToggleTree)
        );
        assert_eq!(action(key(KeyCode::Esc), false), Some(Action::ClearFilter));
        assert_eq!(action(key(KeyCode::Char('z')), false), None);
        assert_eq!(action(ctrl('t'), false), None);
        let mut released = key(KeyCode::Char('q'));
        released.kind = KeyEventKind::Release;
        assert_eq!(action(released, false), None);
    }

    #[test]
    fn while_typing_keys_are_text() {
        assert_eq!(
            action(key(KeyCode::Char('q')), true),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(
            action(key(KeyCode::Char('/')), true),
            Some(Action::FilterChar('/'))
        );
        assert_eq!(action(key(KeyCode::Enter), true), Some(Action::FilterApply));
        assert_eq!(action(key(KeyCode::Esc), true), Some(Action::FilterCancel));
        assert_eq!(
            action(key(KeyCode::Backspace), true),
            Some(Action::FilterBackspace)
        );
        assert_eq!(action(key(KeyCode::Up), true), None);
    }
}
