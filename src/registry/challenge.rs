//! `WWW-Authenticate` parsing (RFC 7235): a header can hold several
//! challenges, parameter values can be quoted and contain commas, and scheme
//! and parameter names are case-insensitive.

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Scheme in lower case: `bearer`, `basic`, ...
    pub scheme: String,
    /// Parameters with lower-case names, in header order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in one header value. Garbage yields fewer
/// challenges, never a panic.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_separators();
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else {
            // Not a token: skip to the next comma and try again.
            p.skip_until_comma();
            continue;
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        p.skip_spaces();
        // Parameters follow until something that looks like the next scheme.
        loop {
            let save = p.i;
            p.skip_separators();
            if p.at_end() {
                break;
            }
            let Some(name) = p.token() else {
                p.i = save;
                p.skip_until_comma();
                break;
            };
            p.skip_spaces();
            if p.peek() != Some(b'=') {
                // A bare token: the next challenge's scheme.
                p.i = save;
                break;
            }
            p.i += 1;
            p.skip_spaces();
            if matches!(p.peek(), None | Some(b',')) || p.peek() == Some(b'=') {
                // token68 such as `Basic abc==`: keep it as an unnamed value.
                while p.peek() == Some(b'=') {
                    p.i += 1;
                }
                challenge.params.push((String::new(), name.to_string()));
                continue;
            }
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default().to_string()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            p.skip_spaces();
        }
        out.push(challenge);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn skip_until_comma(&mut self) {
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == b',' {
                break;
            }
        }
    }

    /// RFC 7230 `token`, plus `/` so token68 values are read whole.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
            if !ok {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            None
        } else {
            std::str::from_utf8(&self.s[start..self.i]).ok()
        }
    }

    /// A quoted-string starting at `"`, with backslash escapes; an
    /// unterminated one runs to the end of the header.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let v = parse(h);
        assert_eq!(v.len(), 1, "{h}: {v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn bearer_with_quoted_commas() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn case_spaces_and_escapes() {
        let c = one(
            r#"BEARER  Realm = "http://x/t" , Service=reg ,error="invalid_token", error_description="a \"quoted\" word""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("REALM"), Some("http://x/t"));
        assert_eq!(c.param("service"), Some("reg"));
        assert_eq!(c.param("error"), Some("invalid_token"));
        assert_eq!(c.param("error_description"), Some(r#"a "quoted" word"#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let v = parse(r#"Basic realm="Registry Realm", Bearer realm="https://a/t",service="s""#);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scheme, "basic");
        assert_eq!(v[0].param("realm"), Some("Registry Realm"));
        assert_eq!(v[1].scheme, "bearer");
        assert_eq!(v[1].param("service"), Some("s"));
    }

    #[test]
    fn bare_scheme_and_token68() {
        assert_eq!(one("Basic").scheme, "basic");
        let v = parse("Negotiate abc==, Basic realm=x");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].params, vec![(String::new(), "abc".to_string())]);
        assert_eq!(v[1].param("realm"), Some("x"));
    }

    #[test]
    fn garbage_never_panics() {
        for h in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer ,=,=",
            "(){}",
            "Bearer realm=",
            "ü Bearer realm=x",
            "Bearer realm===",
        ] {
            let _ = parse(h);
        }
        assert_eq!(
            parse("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
    }
}
