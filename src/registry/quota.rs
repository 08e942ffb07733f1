//! Pull quotas a registry announces, and the share of them we leave to the
//! nodes. Docker Hub counts every manifest GET as a pull (HEAD and blob
//! requests are free) against a quota the nodes behind the same address
//! share with us, and says what is left on every answer, HEAD included:
//! `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 76;w=21600`.
//! The IETF drafts spell the same headers `RateLimit-Limit` and
//! `RateLimit-Remaining`, possibly as a list whose first item is the one in
//! force (`10, 10;w=1, 50;w=60`). A registry that sends neither is unmetered.

use super::transport::Response;

/// What an answer said of its quota: pulls allowed in the window, and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `RateLimit-Limit`.
    pub limit: u64,
    /// `RateLimit-Remaining`.
    pub remaining: u64,
}

impl Quota {
    /// The quota an answer announces, when it names both values.
    pub fn of(resp: &Response) -> Option<Quota> {
        Some(Quota {
            limit: parse_count(resp.header("ratelimit-limit")?)?,
            remaining: parse_count(resp.header("ratelimit-remaining")?)?,
        })
    }

    /// Whether one more counted request would eat into what the nodes need:
    /// fewer than `reserve_percent` of the limit is left. A reserve of 0
    /// never holds back; a limit of 0 (nothing may be pulled) always does.
    pub fn reserved_for_nodes(&self, reserve_percent: u8) -> bool {
        if reserve_percent == 0 {
            return false;
        }
        // In u128: no product of two u64 overflows it.
        (self.remaining as u128) * 100 < (self.limit as u128) * reserve_percent.min(100) as u128
            || self.limit == 0
    }

    /// Why a counted request was not made, for a check's reason.
    pub fn describe_reserve(&self, host: &str, reserve_percent: u8) -> String {
        format!(
            "{host} has {} of {} pulls left, below the {reserve_percent}% kept for the nodes",
            self.remaining, self.limit
        )
    }
}

/// The count a rate-limit header gives: the first list item's number,
/// before any `;parameter` (`76;w=21600` is 76). `None` for anything else.
pub fn parse_count(value: &str) -> Option<u64> {
    let first = value.split(',').next()?;
    let number = first.split(';').next()?.trim();
    if number.is_empty() || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// Parses `--pull-quota-reserve`: a percentage, `50` or `50%`.
pub fn parse_reserve(value: &str) -> Result<u8, String> {
    let v = value.trim();
    let v = v.strip_suffix('%').unwrap_or(v).trim();
    match v.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!(
            "{value:?}: expected a percentage of the registry's pull limit from 0 to 100, e.g. 50%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> Response {
        Response {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(parse_count("100;w=21600"), Some(100));
        assert_eq!(parse_count(" 76 ;w=21600"), Some(76));
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("10, 10;w=1, 50;w=60"), Some(10));
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_count(";w=5"), None);
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("1e3"), None);
        assert_eq!(parse_count("99999999999999999999"), None);
        assert_eq!(parse_count("limit=100, remaining=50"), None);
    }

    #[test]
    fn docker_hub_answers() {
        let q = Quota::of(&resp(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "2;w=21600"),
            ("docker-ratelimit-source", "203.0.113.7"),
        ]))
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: 100,
                remaining: 2
            }
        );
        assert!(q.reserved_for_nodes(50));
        assert!(!q.reserved_for_nodes(0));
        assert!(q.reserved_for_nodes(3));
        assert!(!q.reserved_for_nodes(2), "2 of 100 is exactly a 2% reserve");
        assert_eq!(Quota::of(&resp(&[("ratelimit-limit", "100")])), None);
        assert_eq!(Quota::of(&resp(&[])), None);
        let half = Quota {
            limit: 100,
            remaining: 50,
        };
        assert!(!half.reserved_for_nodes(50));
        let none = Quota {
            limit: 0,
            remaining: 0,
        };
        assert!(none.reserved_for_nodes(1));
        let huge = Quota {
            limit: u64::MAX,
            remaining: u64::MAX,
        };
        assert!(!huge.reserved_for_nodes(100));
    }

    #[test]
    fn reserve_flag() {
        assert_eq!(parse_reserve("50"), Ok(50));
        assert_eq!(parse_reserve("25%"), Ok(25));
        assert_eq!(parse_reserve("0"), Ok(0));
        assert_eq!(parse_reserve("100%"), Ok(100));
        assert!(parse_reserve("101").is_err());
        assert!(parse_reserve("-1").is_err());
        assert!(parse_reserve("half").is_err());
    }
}
