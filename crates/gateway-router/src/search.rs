//! Ranked text search over tools, for agents that cannot hold a large catalog in
//! their context: `gateway__search_tools` asks "which tool does X?" and gets the best
//! few. Scoring is deliberately simple and explainable (no index to keep in step
//! with the snapshot; a linear scan of 10,000 tools takes well under a millisecond):
//!
//! - the whole query equal to a tool's exposed or original name wins outright;
//! - each query word found in the name scores most (a whole name part more than a
//!   substring), in the title less, in the description least (a whole word more
//!   than a substring);
//! - tools matching more of the query's words rank above tools matching fewer;
//! - ties are broken by name, so results are stable.

/// One searchable item.
#[derive(Debug, Clone, Copy)]
pub struct SearchDoc<'a> {
    /// The name clients call it by.
    pub name: &'a str,
    /// The upstream's own name.
    pub original: &'a str,
    /// Its title, if any.
    pub title: Option<&'a str>,
    /// Its description, if any.
    pub description: Option<&'a str>,
}

/// A parsed query: lowercase words of letters and digits.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    whole: String,
    words: Vec<String>,
}

/// Most words of a query that count (the rest are ignored).
const MAX_WORDS: usize = 16;

/// The whole query is the name.
const EXACT_NAME: u32 = 10_000;
/// Per query word: a whole part of the name (`weather` in `get_weather`).
const NAME_PART: u32 = 40;
/// Per query word: a substring of the name.
const NAME_SUBSTRING: u32 = 25;
/// Per query word: in the title.
const TITLE: u32 = 15;
/// Per query word: a whole word of the description.
const DESCRIPTION_WORD: u32 = 8;
/// Per query word: a substring of the description.
const DESCRIPTION_SUBSTRING: u32 = 3;
/// Per query word matched anywhere (coverage beats repetition).
const COVERAGE: u32 = 50;

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl SearchQuery {
    /// Parses a query; `None` when it has no word to search for.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parsed: Vec<String> = Vec::new();
        for word in words(text) {
            if !parsed.contains(&word) && parsed.len() < MAX_WORDS {
                parsed.push(word);
            }
        }
        (!parsed.is_empty()).then(|| Self {
            whole: text.trim().to_lowercase(),
            words: parsed,
        })
    }

    /// How well `doc` matches; `None` when no word of the query is found in it.
    pub fn score(&self, doc: &SearchDoc<'_>) -> Option<u32> {
        let name = doc.name.to_lowercase();
        let original = doc.original.to_lowercase();
        if self.whole == name || self.whole == original {
            return Some(EXACT_NAME);
        }
        let name_parts: Vec<String> = words(&name).collect();
        let title = doc.title.map(str::to_lowercase).unwrap_or_default();
        let description = doc.description.map(str::to_lowercase).unwrap_or_default();
        let description_words: Vec<String> = words(&description).collect();
        let mut total = 0;
        let mut matched = 0;
        for word in &self.words {
            let mut points = 0;
            if name_parts.iter().any(|part| part == word) {
                points += NAME_PART;
            } else if name.contains(word.as_str()) {
                points += NAME_SUBSTRING;
            }
            if title.contains(word.as_str()) {
                points += TITLE;
            }
            if description_words.iter().any(|w| w == word) {
                points += DESCRIPTION_WORD;
            } else if description.contains(word.as_str()) {
                points += DESCRIPTION_SUBSTRING;
            }
            if points > 0 {
                matched += 1;
                total += points;
            }
        }
        (matched > 0).then_some(total + matched * COVERAGE)
    }
}

/// Ranks `docs` against `query`, best first, at most `limit`: each hit is the
/// document's index in `docs` with its score.
pub fn rank<'a>(
    query: &SearchQuery,
    docs: impl IntoIterator<Item = SearchDoc<'a>>,
    limit: usize,
) -> Vec<(usize, u32)> {
    let mut hits: Vec<(usize, u32, &'a str)> = docs
        .into_iter()
        .enumerate()
        .filter_map(|(index, doc)| query.score(&doc).map(|score| (index, score, doc.name)))
        .collect();
    hits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(b.2)));
    hits.truncate(limit);
    hits.into_iter()
        .map(|(index, score, _)| (index, score))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(name: &'a str, description: &'a str) -> SearchDoc<'a> {
        SearchDoc {
            name,
            original: name.split_once("__").map_or(name, |(_, o)| o),
            title: None,
            description: Some(description),
        }
    }

    fn names<'a>(query: &str, docs: &[SearchDoc<'a>]) -> Vec<&'a str> {
        let query = SearchQuery::parse(query).expect("query");
        rank(&query, docs.iter().copied(), 10)
            .into_iter()
            .map(|(i, _)| docs[i].name)
            .collect()
    }

    #[test]
    fn an_exact_name_ranks_first_even_against_a_description_full_of_the_word() {
        let docs = [
            doc("a__echo_twice", "echo echo echo: echoes the echo"),
            doc("b__echo", "repeats text"),
            doc("c__say", "echo something"),
        ];
        assert_eq!(names("b__echo", &docs)[0], "b__echo");
        assert_eq!(
            names("echo", &docs)[0],
            "b__echo",
            "the original name is exact too"
        );
    }

    #[test]
    fn more_words_matched_beats_one_word_matched_often() {
        let docs = [
            doc("w__forecast", "weather weather weather"),
            doc("w__city_weather", "the forecast for a city"),
        ];
        assert_eq!(names("city weather forecast", &docs)[0], "w__city_weather");
    }

    #[test]
    fn a_word_in_the_description_finds_a_tool_and_nothing_unrelated() {
        let docs = [
            doc("x__t1", "Converts temperatures between units"),
            doc("x__t2", "Sends an email"),
        ];
        assert_eq!(names("temperatures", &docs), vec!["x__t1"]);
        assert!(names("zebra", &docs).is_empty());
    }

    proptest::proptest! {
        /// Any query and any tool text: an answer, never a panic.
        #[test]
        fn any_text_gets_an_answer(query in "\\PC{0,100}", name in "\\PC{0,40}", description in "\\PC{0,200}") {
            if let Some(query) = SearchQuery::parse(&query) {
                let _ = query.score(&doc(&name, &description));
            }
        }
    }

    #[test]
    fn queries_without_words_are_refused_and_ties_are_stable() {
        assert!(SearchQuery::parse("  --- ").is_none());
        let docs = [doc("b__same", "same"), doc("a__same", "same")];
        assert_eq!(names("same", &docs), vec!["a__same", "b__same"]);
    }
}
