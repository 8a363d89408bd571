//! Scrubbing personal data from text (`scrubPII`): what looks like an email address,
//! a phone number, an IP address, a credit card number, a US social security number, a
//! MAC address, an IBAN or a PO box is replaced with a placeholder, `<EMAIL_ADDRESS>`,
//! `<PHONE_NUMBER>`, `<IP>`, `<CREDIT_CARD>`, `<US_SSN>`, `<MAC_ADDRESS>`, `<IBAN>`,
//! `<PO_BOX>` — the placeholders daprd's scrubber writes.
//!
//! Deliberate difference: daprd's scrubber also guesses street addresses, ZIP codes and
//! ISBNs; those guesses catch ordinary numbers and words too often to be worth copying,
//! so tandem leaves them.

use std::sync::LazyLock;

use regex::Regex;

/// The entities, in the order their patterns are tried; where two matches overlap,
/// the one that starts first (then the longer) wins.
static ENTITIES: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    [
        (
            "<EMAIL_ADDRESS>",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}".to_owned(),
        ),
        (
            "<IP>",
            format!(
                r"\b(?:{octet}\.){{3}}{octet}\b|\b(?:[0-9A-Fa-f]{{1,4}}:){{7}}[0-9A-Fa-f]{{1,4}}\b"
            ),
        ),
        ("<US_SSN>", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b".to_owned()),
        (
            "<CREDIT_CARD>",
            r"\b(?:[0-9]{4}[ \-]?){3}[0-9]{4}\b|\b3[47][0-9]{2}[ \-]?[0-9]{6}[ \-]?[0-9]{5}\b"
                .to_owned(),
        ),
        (
            "<PHONE_NUMBER>",
            r"\+[0-9]{7,15}\b|(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .\-]?[0-9]{3}[ .\-]?[0-9]{4}\b"
                .to_owned(),
        ),
        (
            "<MAC_ADDRESS>",
            r"\b(?:[0-9A-Fa-f]{2}[:\-]){5}[0-9A-Fa-f]{2}\b".to_owned(),
        ),
        (
            "<IBAN>",
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b".to_owned(),
        ),
        (
            "<PO_BOX>",
            r"(?i-u:\bp\.? ?o\.? ?box|\bpost office box)\s*[0-9]+".to_owned(),
        ),
    ]
    .into_iter()
    // The patterns are constants: the tests check that every one compiles.
    .filter_map(|(placeholder, pattern)| Some((placeholder, Regex::new(&pattern).ok()?)))
    .collect()
});

/// `text` with personal data replaced by placeholders.
pub fn scrub(text: &str) -> String {
    let mut found: Vec<(usize, usize, &str)> = ENTITIES
        .iter()
        .flat_map(|(placeholder, regex)| {
            regex
                .find_iter(text)
                .map(move |found| (found.start(), found.end(), *placeholder))
        })
        .collect();
    if found.is_empty() {
        return text.to_owned();
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut scrubbed = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, placeholder) in found {
        if start < at {
            continue; // inside an earlier match
        }
        scrubbed.push_str(&text[at..start]);
        scrubbed.push_str(placeholder);
        at = end;
    }
    scrubbed.push_str(&text[at..]);
    scrubbed
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn what_daprd_scrubs_is_scrubbed_the_same_way() {
        // daprd's own integration expectations.
        assert_eq!(
            scrub("well hello there, my phone number is +2222222222"),
            "well hello there, my phone number is <PHONE_NUMBER>"
        );
        assert_eq!(
            scrub("well hello there, my email is test@test.com"),
            "well hello there, my email is <EMAIL_ADDRESS>"
        );
        assert_eq!(
            scrub("well hello there from 10.8.9.1"),
            "well hello there from <IP>"
        );
        assert_eq!(scrub("well hello there"), "well hello there");
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(super::ENTITIES.len(), 8);
    }

    #[test]
    fn other_entities() {
        assert_eq!(scrub("card 4111 1111 1111 1111."), "card <CREDIT_CARD>.");
        assert_eq!(scrub("ssn 123-45-6789"), "ssn <US_SSN>");
        assert_eq!(scrub("call (555) 123-4567 now"), "call <PHONE_NUMBER> now");
        assert_eq!(scrub("nic 00:1A:2b:3C:4d:5E"), "nic <MAC_ADDRESS>");
        assert_eq!(scrub("pay to DE89 3704 0044 0532 0130 00"), "pay to <IBAN>");
        assert_eq!(scrub("write to PO Box 1234"), "write to <PO_BOX>");
        assert_eq!(scrub("Dapr 1.16 has 42 APIs"), "Dapr 1.16 has 42 APIs");
        assert_eq!(scrub("héllo ünïcode"), "héllo ünïcode");
    }
}
