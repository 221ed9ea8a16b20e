//! Parses the durations users type: plain seconds (`2`, `0.5`) or a number with a unit
//! (`500ms`, `2s`, `10m`, `1h`).
use std::time::Duration;

/// Why a duration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number with an optional unit.
    #[error(
        "invalid duration {0:?}: expected seconds (2, 0.5) or a number with a unit (500ms, 2s, 10m, 1h)"
    )]
    Invalid(String),
    /// Zero, negative or absurdly large.
    #[error("duration {0:?} is out of range (must be > 0 and at most a day)")]
    OutOfRange(String),
}

/// Parses `text` into a duration greater than zero and at most one day.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError::Invalid(text.to_owned())),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Invalid(text.to_owned()))?;
    let seconds = value * scale;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 {
        return Err(DurationError::OutOfRange(text.to_owned()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    //! Accepted spellings and the one-line refusals.
    use super::*;

    #[test]
    fn plain_seconds_and_units() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse_duration("fast"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("2x"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(parse_duration(""), Err(DurationError::Invalid(_))));
        assert!(matches!(
            parse_duration("0"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_duration("-1"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_duration("2d"),
            Err(DurationError::Invalid(_))
        ));
    }
}
