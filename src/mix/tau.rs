//! Standard Tau levels: the few public (crowd, delay) pairs senders should use.
//!
//! A mix sees every sender's Tau values, and its release pattern shows them to an observer: a
//! rare pair marks its sender (anonymity-pitfalls #2). So BuMP offers four named levels, routes
//! by default at [`DEFAULT_LEVEL`], and treats exact values as an expert override that `bump
//! send` warns about. Cover traffic and loop packets use the same levels so they look like
//! real traffic. docs/protocol.md §6.4 lists the levels; docs/anonymity.md shows what each buys.

use std::fmt;

/// A named (crowd, delay) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TauLevel {
    pub name: &'static str,
    /// Minimum crowd: packets that must enter the mix's pool after this one.
    pub crowd: u64,
    /// Minimum delay at each mix, seconds.
    pub delay_secs: u64,
}

/// The standard levels, weakest first.
pub const LEVELS: [TauLevel; 4] = [
    TauLevel {
        name: "none",
        crowd: 0,
        delay_secs: 0,
    },
    TauLevel {
        name: "low",
        crowd: 2,
        delay_secs: 10,
    },
    TauLevel {
        name: "standard",
        crowd: 5,
        delay_secs: 30,
    },
    TauLevel {
        name: "high",
        crowd: 20,
        delay_secs: 300,
    },
];

/// The level used when a sender names none.
pub const DEFAULT_LEVEL: &str = "standard";

impl TauLevel {
    /// A level by name.
    pub fn named(name: &str) -> Option<TauLevel> {
        LEVELS.iter().copied().find(|l| l.name == name.trim())
    }

    /// The default level.
    pub fn default_level() -> TauLevel {
        // DEFAULT_LEVEL is one of LEVELS (tested).
        Self::named(DEFAULT_LEVEL).unwrap_or(LEVELS[2])
    }

    /// The standard level with exactly these values, if any.
    pub fn matching(crowd: u64, delay_secs: u64) -> Option<TauLevel> {
        LEVELS
            .iter()
            .copied()
            .find(|l| l.crowd == crowd && l.delay_secs == delay_secs)
    }

    /// Names of all levels, for help and error messages: "none, low, standard, high".
    pub fn names() -> String {
        LEVELS.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")
    }
}

/// A sender's Tau values: a level, or a level with expert overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tau {
    pub crowd: u64,
    pub delay_secs: u64,
}

/// A Tau level name that is none of [`LEVELS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Tau level {name:?}; the levels are {}", TauLevel::names())]
pub struct UnknownLevel {
    pub name: String,
}

impl Tau {
    /// The one way a sender's choice becomes Tau values: the named level (default
    /// [`DEFAULT_LEVEL`]), with `crowd` and `delay_secs` overriding its values when given.
    pub fn resolve(
        level: Option<&str>,
        crowd: Option<u64>,
        delay_secs: Option<u64>,
    ) -> Result<Tau, UnknownLevel> {
        let l = match level {
            Some(name) => TauLevel::named(name).ok_or_else(|| UnknownLevel {
                name: name.to_string(),
            })?,
            None => TauLevel::default_level(),
        };
        Ok(Tau {
            crowd: crowd.unwrap_or(l.crowd),
            delay_secs: delay_secs.unwrap_or(l.delay_secs),
        })
    }

    /// The standard level these values are, if any (others set the sender's packets apart).
    pub fn standard(&self) -> Option<TauLevel> {
        TauLevel::matching(self.crowd, self.delay_secs)
    }
}

impl From<TauLevel> for Tau {
    fn from(l: TauLevel) -> Tau {
        Tau {
            crowd: l.crowd,
            delay_secs: l.delay_secs,
        }
    }
}

impl fmt::Display for TauLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (crowd {}, delay {}s)",
            self.name, self.crowd, self.delay_secs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_distinct_ordered_and_the_default_exists() {
        assert_eq!(TauLevel::default_level().name, DEFAULT_LEVEL);
        for w in LEVELS.windows(2) {
            assert!(w[0].crowd < w[1].crowd && w[0].delay_secs < w[1].delay_secs);
        }
        assert_eq!(TauLevel::named("high").unwrap().crowd, 20);
        assert!(TauLevel::named("medium").is_none());
        assert_eq!(TauLevel::matching(2, 10).unwrap().name, "low");
        assert!(TauLevel::matching(3, 10).is_none());
    }

    #[test]
    fn resolve_takes_a_level_then_overrides() {
        let t = Tau::resolve(None, None, None).unwrap();
        assert_eq!(t.standard().unwrap().name, DEFAULT_LEVEL);
        let t = Tau::resolve(Some("low"), None, Some(60)).unwrap();
        assert_eq!((t.crowd, t.delay_secs), (2, 60));
        assert!(t.standard().is_none());
        let e = Tau::resolve(Some("medium"), None, None).unwrap_err();
        assert!(e.to_string().contains("none, low, standard, high"), "{e}");
    }
}
