//! Topic patterns: `.`-separated tokens where `*` matches one token and a final `>`
//! matches one or more.

use crate::error::PatternError;

const SEPARATOR: u8 = b'.';
/// The wildcard token that matches one token.
const ONE: u8 = b'*';
/// The wildcard token that matches one or more final tokens.
const TAIL: u8 = b'>';

/// A well-formed topic pattern, borrowed.
///
/// ```
/// use microsocket_core::Pattern;
///
/// let p = Pattern::new(b"sensor.*.temp").unwrap();
/// assert!(p.matches(b"sensor.kitchen.temp"));
/// assert!(!p.matches(b"sensor.kitchen.hum"));
/// let tail = Pattern::new(b"sensor.>").unwrap();
/// assert!(tail.matches(b"sensor.kitchen") && tail.matches(b"sensor.kitchen.temp"));
/// assert!(!tail.matches(b"sensor"));
/// assert!(Pattern::new(b"sensor.>.temp").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern<'a>(&'a [u8]);

impl<'a> Pattern<'a> {
    /// Validates `bytes` as a pattern.
    ///
    /// # Errors
    /// [`PatternError`] if a token is empty, a `>` is not last, or a token mixes a
    /// wildcard with other bytes.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PatternError> {
        // One pass over the bytes, each token checked when it ends: a walk by
        // tokens would look at every byte twice.
        let mut token_len = 0;
        let mut wildcard = None;
        for &b in bytes {
            if b == SEPARATOR {
                check_token(token_len, wildcard, false)?;
                token_len = 0;
                wildcard = None;
            } else {
                token_len += 1;
                if b == ONE || b == TAIL {
                    wildcard = Some(b);
                }
            }
        }
        check_token(token_len, wildcard, true)?;
        Ok(Self(bytes))
    }

    /// A pattern already validated by [`Pattern::new`] (one kept in a
    /// subscription table), not checked again.
    pub(crate) const fn validated(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The pattern's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether the pattern has no wildcard, and so matches only itself.
    #[must_use]
    pub fn is_literal(&self) -> bool {
        self.tokens().all(|t| t != [ONE] && t != [TAIL])
    }

    /// The literal tokens before the first wildcard, joined: every topic the
    /// pattern matches starts with it. Useful as an index key.
    #[must_use]
    pub fn literal_prefix(&self) -> &'a [u8] {
        let mut end = 0;
        for token in self.tokens() {
            if token == [ONE] || token == [TAIL] {
                break;
            }
            end += token.len() + 1;
        }
        &self.0[..end.min(self.0.len())]
    }

    /// Whether `topic` matches the pattern.
    #[must_use]
    pub fn matches(&self, topic: &[u8]) -> bool {
        let mut pattern = self.0;
        // `None` once every token of the topic is taken.
        let mut topic = Some(topic);
        loop {
            let (token, pattern_rest) = split_token(pattern);
            let Some(topic_left) = topic else {
                return false;
            };
            if token == [TAIL] {
                // One or more tokens remain.
                return true;
            }
            let (topic_token, topic_rest) = split_token(topic_left);
            if token != [ONE] && token != topic_token {
                return false;
            }
            topic = topic_rest;
            match pattern_rest {
                Some(rest) => pattern = rest,
                None => return topic.is_none(),
            }
        }
    }

    fn tokens(&self) -> core::slice::Split<'a, u8, impl FnMut(&u8) -> bool> {
        self.0.split(|&b| b == SEPARATOR)
    }
}

/// The first token of `bytes`, and what follows its separator (`None` when
/// it was the last token).
fn split_token(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match bytes.iter().position(|&b| b == SEPARATOR) {
        Some(i) => {
            let (token, rest) = bytes.split_at(i);
            (token, rest.get(1..))
        }
        None => (bytes, None),
    }
}

/// The rules for one token of a pattern, given its length, the wildcard byte
/// it holds (if any) and whether it is the last.
fn check_token(len: usize, wildcard: Option<u8>, last: bool) -> Result<(), PatternError> {
    match wildcard {
        _ if len == 0 => Err(PatternError::EmptyToken),
        Some(_) if len > 1 => Err(PatternError::MixedWildcard),
        Some(TAIL) if !last => Err(PatternError::TailWildcardNotLast),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! cases {
        ($($name:ident: $pattern:literal, $topic:literal => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let p = Pattern::new($pattern).unwrap();
                assert_eq!(p.matches($topic), $expected, "{:?} ~ {:?}", $pattern, $topic);
                assert_eq!(naive_match($pattern, $topic), $expected);
            }
        )*};
    }

    cases! {
        exact_same: b"a.b", b"a.b" => true;
        exact_other: b"a.b", b"a.c" => false;
        exact_longer_topic: b"a.b", b"a.b.c" => false;
        exact_shorter_topic: b"a.b", b"a" => false;
        one_middle: b"sensor.*.temp", b"sensor.kitchen.temp" => true;
        one_middle_too_deep: b"sensor.*.temp", b"sensor.a.b.temp" => false;
        one_middle_missing: b"sensor.*.temp", b"sensor.temp" => false;
        one_matches_empty_token: b"a.*.c", b"a..c" => true;
        tail_one: b"sensor.>", b"sensor.kitchen" => true;
        tail_many: b"sensor.>", b"sensor.kitchen.temp" => true;
        tail_none: b"sensor.>", b"sensor" => false;
        tail_other_root: b"sensor.>", b"sensors.kitchen" => false;
        tail_alone: b">", b"anything.at.all" => true;
        one_alone: b"*", b"a" => true;
        one_alone_two: b"*", b"a.b" => false;
        mixed: b"*.b.>", b"a.b.c.d" => true;
        bytes_not_text: b"\xff.*", b"\xff.\x00" => true;
    }

    #[test]
    fn invalid_patterns() {
        for (p, e) in [
            (&b""[..], PatternError::EmptyToken),
            (b".a", PatternError::EmptyToken),
            (b"a.", PatternError::EmptyToken),
            (b"a..b", PatternError::EmptyToken),
            (b"a.>.b", PatternError::TailWildcardNotLast),
            (b">.>", PatternError::TailWildcardNotLast),
            (b"a*", PatternError::MixedWildcard),
            (b"a.b>", PatternError::MixedWildcard),
            (b"**", PatternError::MixedWildcard),
        ] {
            assert_eq!(Pattern::new(p), Err(e), "{p:?}");
        }
    }

    #[test]
    fn literal_prefix() {
        assert_eq!(Pattern::new(b"a.b.*").unwrap().literal_prefix(), b"a.b.");
        assert_eq!(Pattern::new(b"*.b").unwrap().literal_prefix(), b"");
        assert_eq!(Pattern::new(b"a.b").unwrap().literal_prefix(), b"a.b");
        assert!(Pattern::new(b"a.b").unwrap().is_literal());
    }

    /// A deliberately simple reference: recursive token matching.
    fn naive_match(pattern: &[u8], topic: &[u8]) -> bool {
        fn go(p: &[&[u8]], t: &[&[u8]]) -> bool {
            match (p.first(), t.first()) {
                (None, None) => true,
                (Some(&b">"), _) => p.len() == 1 && !t.is_empty(),
                (Some(&b"*"), Some(_)) => go(&p[1..], &t[1..]),
                (Some(a), Some(b)) => a == b && go(&p[1..], &t[1..]),
                _ => false,
            }
        }
        let p: std::vec::Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
        let t: std::vec::Vec<&[u8]> = topic.split(|&b| b == b'.').collect();
        go(&p, &t)
    }

    /// A deliberately simple reference for validation: token by token.
    fn naive_validate(pattern: &[u8]) -> Result<(), PatternError> {
        let tokens: std::vec::Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(PatternError::EmptyToken);
            }
            if *token == b">" {
                if i + 1 < tokens.len() {
                    return Err(PatternError::TailWildcardNotLast);
                }
            } else if *token != b"*" && token.iter().any(|&b| b == b'*' || b == b'>') {
                return Err(PatternError::MixedWildcard);
            }
        }
        Ok(())
    }

    fn token() -> impl Strategy<Value = std::vec::Vec<u8>> {
        prop_oneof![
            Just(b"*".to_vec()),
            Just(b">".to_vec()),
            Just(b"a".to_vec()),
            Just(b"b".to_vec()),
            Just(b"".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..3),
        ]
    }

    fn dotted() -> impl Strategy<Value = std::vec::Vec<u8>> {
        proptest::collection::vec(token(), 1..5).prop_map(|ts| ts.join(&b'.'))
    }

    proptest! {
        // Miri runs a few cases only (it is some thousand times slower), and cannot
        // touch the files where proptest keeps failing cases.
        #![proptest_config(if cfg!(miri) {
            ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig::default()
        })]

        #[test]
        fn matcher_agrees_with_reference(p in dotted(), t in dotted()) {
            if let Ok(pattern) = Pattern::new(&p) {
                prop_assert_eq!(pattern.matches(&t), naive_match(&p, &t));
                prop_assert!(t.starts_with(pattern.literal_prefix()) || !pattern.matches(&t));
            }
        }

        #[test]
        fn validation_agrees_with_reference(p in dotted()) {
            prop_assert_eq!(Pattern::new(&p).map(|_| ()), naive_validate(&p));
        }

        #[test]
        fn literal_patterns_match_only_themselves(t in dotted()) {
            if let Ok(pattern) = Pattern::new(&t) {
                if pattern.is_literal() {
                    prop_assert!(pattern.matches(&t));
                }
            }
        }
    }
}
