//! Trigger matching, case- and accent-insensitive.

use regex::{Regex, RegexBuilder};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lowercase, accents removed: "Élan Café" -> "elan cafe".
pub fn fold(text: &str) -> String {
    strip_accents(text).to_lowercase()
}

fn strip_accents(text: &str) -> String {
    text.nfd().filter(|c| !is_combining_mark(*c)).collect()
}

/// Folded words, punctuation dropped: "Check my balance, please!" -> [check, my, balance, please].
pub fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(String::from).collect()
}

/// How strongly an utterance matched a task; higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    Keyword,
    Pattern,
    Phrase,
}

/// A task's triggers, compiled once at load.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    phrases: Vec<Vec<String>>,
    keywords: Vec<Vec<String>>,
    patterns: Vec<Regex>,
}

impl Matcher {
    /// Fails with the index and message of the first invalid pattern.
    pub fn compile(phrases: &[String], keywords: &[String], patterns: &[String]) -> Result<Self, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| compile_pattern(p).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            phrases: phrases.iter().map(|p| words(p)).collect(),
            keywords: keywords.iter().map(|k| words(k)).collect(),
            patterns,
        })
    }

    pub fn strength(&self, utterance: &Utterance) -> Option<Strength> {
        if self.phrases.iter().any(|p| !p.is_empty() && *p == utterance.words) {
            Some(Strength::Phrase)
        } else if self.patterns.iter().any(|r| r.is_match(&utterance.folded)) {
            Some(Strength::Pattern)
        } else if self.keywords.iter().any(|k| contains_run(&utterance.words, k)) {
            Some(Strength::Keyword)
        } else {
            None
        }
    }
}

/// Patterns are matched against folded text: their accents are removed too
/// (not their case, which escapes like `\D` depend on), and they are compiled
/// case-insensitive with a size bound (user-supplied input).
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("an empty pattern would match every message".into());
    }
    RegexBuilder::new(&strip_accents(pattern)).case_insensitive(true).size_limit(1 << 20).build().map_err(|e| {
        // regex's message draws the pattern over several lines; keep the cause.
        let message = e.to_string();
        let cause = message.lines().last().unwrap_or_default();
        cause.trim_start_matches("error: ").to_string()
    })
}

/// A user message, prepared once per turn for matching.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub folded: String,
    pub words: Vec<String>,
}

impl Utterance {
    pub fn new(text: &str) -> Self {
        Self { folded: fold(text), words: words(text) }
    }

    /// Whole-utterance equality, as for phrases.
    pub fn is(&self, phrase: &str) -> bool {
        let phrase = words(phrase);
        !phrase.is_empty() && phrase == self.words
    }
}

fn contains_run(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(phrases: &[&str], keywords: &[&str], patterns: &[&str]) -> Matcher {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Matcher::compile(&s(phrases), &s(keywords), &s(patterns)).unwrap()
    }

    #[test]
    fn case_and_accent_insensitive() {
        let m = matcher(&["Crème brûlée"], &[], &[]);
        assert_eq!(m.strength(&Utterance::new("CREME BRULEE!")), Some(Strength::Phrase));
        assert_eq!(m.strength(&Utterance::new("creme brulee please")), None);
    }

    #[test]
    fn keywords_match_whole_words_anywhere() {
        let m = matcher(&[], &["account balance"], &[]);
        assert_eq!(m.strength(&Utterance::new("What's my Account  Balance?")), Some(Strength::Keyword));
        assert_eq!(m.strength(&Utterance::new("accountbalance")), None);
    }

    #[test]
    fn patterns_are_folded_and_case_insensitive() {
        let m = matcher(&[], &[], &[r"\bréserv(e|ation)\b"]);
        assert_eq!(m.strength(&Utterance::new("Une RÉSERVATION")), Some(Strength::Pattern));
        assert!(compile_pattern("(unclosed").is_err());
        assert!(compile_pattern("").is_err());
        let letters = matcher(&[], &[], &[r"^\D{3}x$"]);
        assert_eq!(letters.strength(&Utterance::new("ABCX")), Some(Strength::Pattern));
        assert_eq!(letters.strength(&Utterance::new("123x")), None);
    }
}
