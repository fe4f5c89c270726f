//! The functions a template may call: Go's builtins and the Sprig and ESO functions ESO's
//! engine v2 offers that make sense here (`funcs::NAMES`). None reaches the filesystem, the
//! network, the environment or the cluster, and no error message carries an argument's value.

use base64::Engine;
use serde_json::{Map, Value};

use super::exec::sorted;
use super::{binary, pkcs12};

/// Every function a template may name.
pub const NAMES: &[&str] = &[
    // Go's builtins.
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "urlquery",
    // Sprig, as ESO offers it (no env/expandenv).
    "toString",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "fromJson",
    "toYaml",
    "fromYaml",
    "b64enc",
    "b64dec",
    "upper",
    "lower",
    "title",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "replace",
    "quote",
    "squote",
    "default",
    "empty",
    "coalesce",
    "ternary",
    "indent",
    "nindent",
    "list",
    "dict",
    "get",
    "set",
    "hasKey",
    "keys",
    "join",
    "split",
    "splitList",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "repeat",
    "nospace",
    "trunc",
    "sha256sum",
    "add",
    "sub",
    "int",
    "atoi",
    "first",
    "last",
    "fail",
    // ESO's own.
    "filterPEM",
    "jwkPublicKeyPem",
    "jwkPrivateKeyPem",
    "pkcs12key",
    "pkcs12keyPass",
    "pkcs12cert",
    "pkcs12certPass",
    "pemToPkcs12",
    "pemToPkcs12Pass",
    "fullPemToPkcs12",
    "fullPemToPkcs12Pass",
    "pemTruststoreToPKCS12",
    "pemTruststoreToPKCS12Pass",
];

/// Longest string `repeat`, `indent` and the like may build.
const MAX_STRING: usize = 1024 * 1024;

pub fn known(name: &str) -> bool {
    NAMES.contains(&name)
}

pub fn call(name: &str, a: &[Value]) -> Result<Value, String> {
    let arity = |n: usize| -> Result<(), String> {
        if a.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                a.len()
            ))
        }
    };
    let at_least = |n: usize| -> Result<(), String> {
        if a.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want at least {n} got {}",
                a.len()
            ))
        }
    };
    let s = |i: usize| print(&a[i]);
    let fail = |why: &str| Err(format!("error calling {name}: {why}"));
    Ok(match name {
        "not" => {
            arity(1)?;
            Value::Bool(!truth(&a[0]))
        }
        "len" => {
            arity(1)?;
            Value::from(match &a[0] {
                Value::String(x) => binary::bytes(x).len(),
                Value::Array(x) => x.len(),
                Value::Object(x) => x.len(),
                other => return fail(&format!("len of {}", kind(other))),
            })
        }
        "index" => {
            at_least(1)?;
            let mut v = a[0].clone();
            for i in &a[1..] {
                v = match (v, i) {
                    (Value::Array(x), Value::Number(n)) => {
                        match n.as_u64().and_then(|n| x.get(n as usize)) {
                            Some(e) => e.clone(),
                            None => return fail("index out of range"),
                        }
                    }
                    (Value::Object(mut m), Value::String(k)) => m.remove(k).unwrap_or(Value::Null),
                    (Value::Null, _) => return fail("index of untyped nil"),
                    (other, _) => {
                        return fail(&format!("can't index item of type {}", kind(&other)))
                    }
                };
            }
            v
        }
        "print" => Value::String(go_sprint(a)),
        "println" => Value::String(format!(
            "{}\n",
            a.iter().map(print).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            at_least(1)?;
            Value::String(printf(&s(0), &a[1..]))
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            at_least(2)?;
            let cmp = |x: &Value, y: &Value| {
                compare(x, y).ok_or_else(|| {
                    format!("error calling {name}: incompatible types for comparison")
                })
            };
            Value::Bool(match name {
                "eq" => {
                    let mut any = false;
                    for y in &a[1..] {
                        any |= cmp(&a[0], y)? == std::cmp::Ordering::Equal;
                    }
                    any
                }
                "ne" => cmp(&a[0], &a[1])? != std::cmp::Ordering::Equal,
                "lt" => cmp(&a[0], &a[1])?.is_lt(),
                "le" => cmp(&a[0], &a[1])?.is_le(),
                "gt" => cmp(&a[0], &a[1])?.is_gt(),
                _ => cmp(&a[0], &a[1])?.is_ge(),
            })
        }
        "urlquery" => Value::String(urlencoding::encode(&go_sprint(a)).replace("%20", "+")),
        "toString" => {
            arity(1)?;
            Value::String(s(0))
        }
        "toJson" | "toRawJson" => {
            arity(1)?;
            let v = go_numbers(a[0].clone());
            Value::String(if name == "toJson" {
                crate::engine::eso_values::go_json(&v)
            } else {
                v.to_string()
            })
        }
        "toPrettyJson" => {
            arity(1)?;
            Value::String(
                serde_json::to_string_pretty(&go_numbers(a[0].clone())).unwrap_or_default(),
            )
        }
        "fromJson" => {
            arity(1)?;
            // Sprig: invalid JSON gives an empty map. Numbers are Go's float64.
            floats(serde_json::from_str(&s(0)).unwrap_or(Value::Object(Map::new())))
        }
        "toYaml" => {
            arity(1)?;
            let y = serde_yaml::to_string(&go_numbers(a[0].clone()))
                .map_err(|_| format!("error calling {name}: cannot encode"))?;
            Value::String(y.trim_end_matches('\n').to_string())
        }
        "fromYaml" => {
            arity(1)?;
            let v: Value = serde_yaml::from_str(&s(0))
                .map_err(|_| format!("error calling {name}: not YAML"))?;
            floats(v)
        }
        "b64enc" => {
            arity(1)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(binary::bytes(&s(0))))
        }
        "b64dec" => {
            arity(1)?;
            match base64::engine::general_purpose::STANDARD.decode(s(0)) {
                Ok(b) => Value::String(binary::text(&b)),
                Err(_) => return fail("not base64"),
            }
        }
        "upper" => Value::String({
            arity(1)?;
            s(0).to_uppercase()
        }),
        "lower" => Value::String({
            arity(1)?;
            s(0).to_lowercase()
        }),
        "title" => {
            arity(1)?;
            Value::String(
                s(0).split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        "trim" => Value::String({
            arity(1)?;
            s(0).trim().to_string()
        }),
        "nospace" => Value::String({
            arity(1)?;
            s(0).chars().filter(|c| !c.is_whitespace()).collect()
        }),
        "trimAll" => {
            arity(2)?;
            let cut = s(0);
            Value::String(s(1).trim_matches(|c| cut.contains(c)).to_string())
        }
        "trimPrefix" => {
            arity(2)?;
            let (p, x) = (s(0), s(1));
            Value::String(x.strip_prefix(p.as_str()).unwrap_or(&x).to_string())
        }
        "trimSuffix" => {
            arity(2)?;
            let (p, x) = (s(0), s(1));
            Value::String(x.strip_suffix(p.as_str()).unwrap_or(&x).to_string())
        }
        "replace" => {
            arity(3)?;
            let out = s(2).replace(&s(0), &s(1));
            bounded(name, out)?
        }
        "contains" => Value::Bool({
            arity(2)?;
            s(1).contains(&s(0))
        }),
        "hasPrefix" => Value::Bool({
            arity(2)?;
            s(1).starts_with(&s(0))
        }),
        "hasSuffix" => Value::Bool({
            arity(2)?;
            s(1).ends_with(&s(0))
        }),
        "quote" => Value::String(
            a.iter()
                .filter(|v| !v.is_null())
                .map(|v| go_quote(&print(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "squote" => Value::String(
            a.iter()
                .filter(|v| !v.is_null())
                .map(|v| format!("'{}'", print(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "default" => {
            at_least(1)?;
            match a.get(1) {
                Some(given) if !empty(given) => given.clone(),
                _ => a[0].clone(),
            }
        }
        "empty" => Value::Bool({
            arity(1)?;
            empty(&a[0])
        }),
        "coalesce" => a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Null),
        "ternary" => {
            arity(3)?;
            if truth(&a[2]) {
                a[0].clone()
            } else {
                a[1].clone()
            }
        }
        "indent" | "nindent" => {
            arity(2)?;
            let n = int(&a[0]).ok_or_else(|| format!("error calling {name}: not a number"))?;
            let pad = " ".repeat(n.clamp(0, 1024) as usize);
            let text = s(1);
            if text.len().saturating_mul(1 + pad.len()) > MAX_STRING * 4 {
                return fail("result too large");
            }
            let body = text
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            let body = if text.ends_with('\n') {
                format!("{body}\n{pad}")
            } else {
                body
            };
            bounded(
                name,
                if name == "nindent" {
                    format!("\n{body}")
                } else {
                    body
                },
            )?
        }
        "repeat" => {
            arity(2)?;
            let n = int(&a[0])
                .ok_or_else(|| format!("error calling {name}: not a number"))?
                .max(0) as usize;
            let text = s(1);
            if text.len().saturating_mul(n) > MAX_STRING {
                return fail("result too large");
            }
            Value::String(text.repeat(n))
        }
        "trunc" => {
            arity(2)?;
            let n = int(&a[0]).ok_or_else(|| format!("error calling {name}: not a number"))?;
            let chars: Vec<char> = s(1).chars().collect();
            let n = n.unsigned_abs() as usize;
            Value::String(if int(&a[0]).unwrap_or(0) >= 0 {
                chars.iter().take(n).collect()
            } else {
                chars[chars.len().saturating_sub(n)..].iter().collect()
            })
        }
        "list" => Value::Array(a.to_vec()),
        "dict" => {
            let mut m = Map::new();
            for pair in a.chunks(2) {
                m.insert(
                    print(&pair[0]),
                    pair.get(1).cloned().unwrap_or(Value::String(String::new())),
                );
            }
            Value::Object(m)
        }
        "get" => {
            arity(2)?;
            match &a[0] {
                Value::Object(m) => m
                    .get(&s(1))
                    .cloned()
                    .unwrap_or(Value::String(String::new())),
                other => return fail(&format!("first argument is a {}, not a map", kind(other))),
            }
        }
        "set" => {
            arity(3)?;
            match &a[0] {
                Value::Object(m) => {
                    let mut m = m.clone();
                    m.insert(s(1), a[2].clone());
                    Value::Object(m)
                }
                other => return fail(&format!("first argument is a {}, not a map", kind(other))),
            }
        }
        "hasKey" => {
            arity(2)?;
            Value::Bool(matches!(&a[0], Value::Object(m) if m.contains_key(&s(1))))
        }
        "keys" => Value::Array(
            a.iter()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys().cloned().map(Value::String))
                .collect(),
        ),
        "join" => {
            arity(2)?;
            let items: Vec<String> = match &a[1] {
                Value::Array(x) => x.iter().map(print).collect(),
                other => vec![print(other)],
            };
            Value::String(items.join(&s(0)))
        }
        "split" => {
            arity(2)?;
            let mut m = Map::new();
            for (i, part) in s(1).split(&s(0)).enumerate() {
                m.insert(format!("_{i}"), Value::String(part.to_string()));
            }
            Value::Object(m)
        }
        "splitList" => {
            arity(2)?;
            Value::Array(
                s(1).split(&s(0))
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "first" | "last" => {
            arity(1)?;
            match &a[0] {
                Value::Array(x) => (if name == "first" { x.first() } else { x.last() })
                    .cloned()
                    .unwrap_or(Value::Null),
                other => return fail(&format!("not a list but a {}", kind(other))),
            }
        }
        "sha256sum" => {
            arity(1)?;
            use sha2::Digest;
            Value::String(
                sha2::Sha256::digest(binary::bytes(&s(0)))
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect(),
            )
        }
        "add" | "sub" => {
            at_least(2)?;
            let nums: Option<Vec<i64>> = a.iter().map(int).collect();
            let nums = nums.ok_or_else(|| format!("error calling {name}: not a number"))?;
            Value::from(if name == "add" {
                nums.iter().fold(0i64, |x, y| x.saturating_add(*y))
            } else {
                nums[0].saturating_sub(nums[1])
            })
        }
        "int" | "atoi" => {
            arity(1)?;
            Value::from(int(&a[0]).unwrap_or(0))
        }
        "fail" => return fail("the template called fail"),
        "filterPEM" => {
            arity(2)?;
            Value::String(filter_pem(&s(0), &s(1)))
        }
        "jwkPublicKeyPem" => {
            arity(1)?;
            Value::String(
                super::jwk::public_key_pem(&s(0))
                    .map_err(|why| format!("error calling {name}: {why}"))?,
            )
        }
        "jwkPrivateKeyPem" => {
            arity(1)?;
            Value::String(
                super::jwk::private_key_pem(&s(0))
                    .map_err(|why| format!("error calling {name}: {why}"))?,
            )
        }
        "pkcs12key"
        | "pkcs12keyPass"
        | "pkcs12cert"
        | "pkcs12certPass"
        | "pemToPkcs12"
        | "pemToPkcs12Pass"
        | "fullPemToPkcs12"
        | "fullPemToPkcs12Pass"
        | "pemTruststoreToPKCS12"
        | "pemTruststoreToPKCS12Pass" => {
            // A `Pass` form takes the password too: first for the readers (Go's order, so a
            // pipeline feeds them the archive), last for the writers.
            let base = name.trim_end_matches("Pass");
            let with_pass = usize::from(name.ends_with("Pass"));
            let takes = if base.ends_with("PemToPkcs12") || base == "pemToPkcs12" {
                2
            } else {
                1
            };
            arity(takes + with_pass)?;
            let reader = base.starts_with("pkcs12");
            let pass = match (with_pass, reader) {
                (0, _) => String::new(),
                (_, true) => s(0),
                (_, false) => s(takes),
            };
            let arg = |i: usize| s(i + if reader { with_pass } else { 0 });
            let out = match base {
                "pkcs12key" => pkcs12::key_pem(&pass, &binary::bytes(&arg(0))),
                "pkcs12cert" => pkcs12::cert_pem(&pass, &binary::bytes(&arg(0))),
                "pemToPkcs12" => pkcs12::from_pem(&arg(0), &arg(1), &pass, false),
                "fullPemToPkcs12" => pkcs12::from_pem(&arg(0), &arg(1), &pass, true),
                _ => pkcs12::truststore(&arg(0), &pass),
            };
            Value::String(out.map_err(|why| format!("error calling {name}: {why}"))?)
        }
        // Short-circuiting: the executor evaluates them.
        "and" | "or" => return Err(format!("{name} is evaluated by the executor")),
        _ => return Err(format!("function {name:?} not defined")),
    })
}

fn bounded(name: &str, s: String) -> Result<Value, String> {
    if s.len() > MAX_STRING {
        return Err(format!("error calling {name}: result too large"));
    }
    Ok(Value::String(s))
}

/// Numbers parsed from JSON or YAML are Go's float64 (printed as Go prints them).
fn floats(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

/// Whole float64s as Go's encoders write them (`1`, not `1.0`).
fn go_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(go_numbers).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, go_numbers(v))).collect()),
        other => other,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok().or(Some(0)),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Null => Some(0),
        _ => None,
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truth(v: &Value) -> bool {
    !empty(v)
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn compare(x: &Value, y: &Value) -> Option<std::cmp::Ordering> {
    match (x, y) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => Some(std::cmp::Ordering::Less),
        _ => None,
    }
}

/// A value as Go's `fmt.Sprint` prints it (`%v`).
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => go_float(n.as_f64().unwrap_or_default()),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            sorted(m)
                .map(|(k, v)| format!("{k}:{}", print(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e6.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let exp = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    // strconv's shortest `%g`: exponent form from 1e6 (`1e+06`), as `fmt.Sprint` prints.
    if (-4..6).contains(&exp) {
        let s = format!("{f}");
        return s;
    }
    // Rust: `1e21`, `1.5e-7`; Go: `1e+21`, `1.5e-07`.
    let s = format!("{f:e}");
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !v.is_string() && !a[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(v));
    }
    out
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %q %x %X %f %t %%`, with an
/// optional width (`%5s`, `%-5s`, `%05d`) and precision (`%.2f`).
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '-' || d == '.' || d == '+' {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = match verb {
            'd' => int(arg).map_or_else(|| format!("%!d({})", kind(arg)), |i| i.to_string()),
            'q' => go_quote(&print(arg)),
            'x' => hex(arg, false),
            'X' => hex(arg, true),
            'f' => {
                let prec = spec
                    .split_once('.')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(6);
                let f = match arg {
                    Value::Number(n) => n.as_f64().unwrap_or_default(),
                    _ => 0.0,
                };
                format!("{f:.prec$}")
            }
            _ => print(arg),
        };
        let width: usize = spec
            .trim_start_matches(['-', '+'])
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count()).min(1024);
        if spec.starts_with('-') {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else if spec.starts_with('0') && verb == 'd' {
            out.push_str(&"0".repeat(pad));
            out.push_str(&text);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    if next.next().is_some() {
        out.push_str("%!(EXTRA)");
    }
    out
}

fn hex(v: &Value, upper: bool) -> String {
    let s = match v {
        Value::Number(n) => n.as_i64().map(|i| format!("{i:x}")).unwrap_or_default(),
        other => print(other).bytes().map(|b| format!("{b:02x}")).collect(),
    };
    if upper {
        s.to_uppercase()
    } else {
        s
    }
}

/// ESO's `filterPEM`: the PEM blocks of one type, in order.
fn filter_pem(kind: &str, pem: &str) -> String {
    let begin = format!("-----BEGIN {kind}-----");
    let end = format!("-----END {kind}-----");
    let mut out = String::new();
    let mut rest = pem;
    while let Some(i) = rest.find(&begin) {
        let Some(j) = rest[i..].find(&end) else { break };
        out.push_str(&rest[i..i + j + end.len()]);
        out.push('\n');
        rest = &rest[i + j + end.len()..];
    }
    out
}
