//! Go `text/template` syntax → a tree: text and actions (`{{ }}`, trim markers `{{- ` / ` -}}`,
//! comments), pipelines with declarations, `if` / `else if` / `range` / `with` / `break` /
//! `continue`. Named templates (`define`, `template`, `block`) are refused: they are the one
//! way a Go template recurses, and ESO's templates do not need them.

use serde_json::Value;

use super::Error;

/// Deepest nesting of blocks and parentheses (the parser and the executor recurse on it).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If {
        pipe: Pipe,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pipe {
    pub line: usize,
    /// Variables declared (`:=`) or assigned (`=`) by the pipeline.
    pub vars: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cmd {
    pub args: Vec<Operand>,
}

/// A term and the fields chained to it (`$x.a.b`, `(pipe).a`).
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    pub term: Term,
    pub chain: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    Dot,
    Var(String),
    Func(String),
    Lit(Value),
    Sub(Box<Pipe>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Dot,
    /// `.name`; `glued`: written right after the previous token (a chain).
    Field(String, bool),
    Var(String),
    Ident(String),
    Lit(Value),
    Open,
    Close,
    Pipe,
    Declare,
    Assign,
    Comma,
}

enum Item {
    Text(String),
    Action(Vec<Tok>, usize),
}

pub fn parse(text: &str) -> Result<Vec<Node>, Error> {
    let items = split(text)?;
    let mut p = Parser { items, at: 0 };
    let (nodes, end) = p.list(0)?;
    match end {
        None => Ok(nodes),
        Some((kw, line)) => Err(Error::at(line, format!("unexpected {{{{{kw}}}}}"))),
    }
}

/// Text and actions, trim markers applied, comments dropped.
fn split(text: &str) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let (before, after) = match rest.find("{{") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut t = if trim_next {
            before.trim_start()
        } else {
            before
        };
        line += before.matches('\n').count();
        let Some(after) = after else {
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            break;
        };
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            t = t.trim_end();
        }
        if !t.is_empty() {
            items.push(Item::Text(t.to_string()));
        }
        let body = if trim_left { &after[1..] } else { after };
        let (toks, consumed, trim_right) = lex_action(body, line)?;
        line += body[..consumed].matches('\n').count();
        if let Some(toks) = toks {
            items.push(Item::Action(toks, line));
        }
        trim_next = trim_right;
        rest = &body[consumed..];
    }
    Ok(items)
}

/// Lexes one action up to and including its `}}`: the tokens (`None` for a comment), bytes
/// consumed, and whether it ended with ` -}}`.
fn lex_action(s: &str, line: usize) -> Result<(Option<Vec<Tok>>, usize, bool), Error> {
    let trimmed = s.trim_start();
    if trimmed.starts_with("/*") {
        let start = s.len() - trimmed.len();
        let end = trimmed
            .find("*/")
            .ok_or_else(|| Error::at(line, "unclosed comment"))?;
        let after = &trimmed[end + 2..];
        for (close, trim) in [(" -}}", true), ("}}", false)] {
            if after.starts_with(close) {
                return Ok((None, start + end + 2 + close.len(), trim));
            }
        }
        return Err(Error::at(line, "comment ends before closing delimiter"));
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let mut spaced = true;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(Error::at(line, "unclosed action"));
        };
        if c.is_ascii_whitespace() && s[i + 1..].starts_with("-}}") {
            return Ok((Some(toks), i + 4, true));
        }
        if s[i..].starts_with("}}") {
            return Ok((Some(toks), i + 2, false));
        }
        if c.is_ascii_whitespace() {
            i += 1;
            spaced = true;
            continue;
        }
        let start = i;
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (v, n) = quoted(&s[i..], line)?;
                i += n;
                Tok::Lit(Value::String(v))
            }
            b'`' => {
                let end = s[i + 1..]
                    .find('`')
                    .ok_or_else(|| Error::at(line, "unterminated raw quoted string"))?;
                let v = s[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Lit(Value::String(v))
            }
            b'.' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                i += 1;
                let n = word(&s[i..]);
                i += n;
                Tok::Field(s[start + 1..i].to_string(), !spaced)
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                Tok::Dot
            }
            b'$' => {
                i += 1;
                i += word(&s[i..]);
                Tok::Var(s[start..i].to_string())
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => {
                let n = s[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._".contains(c)))
                    .unwrap_or(s.len() - i);
                let text = &s[i..i + n];
                i += n;
                Tok::Lit(
                    number(text)
                        .ok_or_else(|| Error::at(line, format!("bad number syntax: {text:?}")))?,
                )
            }
            b'\'' => {
                let end = s[i + 1..]
                    .find('\'')
                    .ok_or_else(|| Error::at(line, "unterminated character constant"))?;
                let ch = s[i + 1..i + 1 + end].chars().next().unwrap_or('\0');
                i += end + 2;
                Tok::Lit(Value::from(ch as u32))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                i += word(&s[i..]);
                match &s[start..i] {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Null),
                    w => Tok::Ident(w.to_string()),
                }
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(Error::at(line, format!("unexpected {ch:?} in command")));
            }
        };
        toks.push(tok);
        spaced = false;
    }
}

fn word(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

fn number(text: &str) -> Option<Value> {
    let clean = text.replace('_', "");
    if let Some(hex) = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        return i64::from_str_radix(hex, 16).ok().map(Value::from);
    }
    if let Ok(i) = clean.parse::<i64>() {
        return Some(Value::from(i));
    }
    clean
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// A Go interpreted string literal at the start of `s`: its value and length.
fn quoted(s: &str, line: usize) -> Result<(String, usize), Error> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars
                    .next()
                    .ok_or_else(|| Error::at(line, "unterminated quoted string"))?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    '0' => '\0',
                    other => return Err(Error::at(line, format!("unsupported escape \\{other}"))),
                });
            }
            c => out.push(c),
        }
    }
    Err(Error::at(line, "unterminated quoted string"))
}

struct Parser {
    items: Vec<Item>,
    at: usize,
}

type End = Option<(String, usize)>;

impl Parser {
    /// Nodes up to `{{end}}` / `{{else …}}` (returned with the rest of that action) or the end.
    fn list(&mut self, depth: usize) -> Result<(Vec<Node>, End), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::at(0, "blocks nested too deeply"));
        }
        let mut nodes = Vec::new();
        while self.at < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.at], Item::Text(String::new()));
            self.at += 1;
            let (toks, line) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(toks, line) => (toks, line),
            };
            let keyword = match toks.first() {
                Some(Tok::Ident(k)) => k.as_str(),
                _ => "",
            };
            match keyword {
                "end" if toks.len() == 1 => return Ok((nodes, Some(("end".into(), line)))),
                "else" => {
                    // `else` or `else if …`: the caller takes the rest.
                    let rest = toks[1..].to_vec();
                    self.items.insert(self.at, Item::Action(rest, line));
                    return Ok((nodes, Some(("else".into(), line))));
                }
                "if" | "range" | "with" => {
                    let pipe = pipeline(&toks[1..], line, depth)?;
                    nodes.push(self.block(keyword, pipe, line, depth)?);
                }
                "break" if toks.len() == 1 => nodes.push(Node::Break),
                "continue" if toks.len() == 1 => nodes.push(Node::Continue),
                "define" | "template" | "block" => {
                    return Err(Error::at(
                        line,
                        format!("{{{{{keyword}}}}}: named templates are not supported"),
                    ))
                }
                _ => nodes.push(Node::Action(pipeline(&toks, line, depth)?)),
            }
        }
        Ok((nodes, None))
    }

    fn block(&mut self, kind: &str, pipe: Pipe, line: usize, depth: usize) -> Result<Node, Error> {
        let (body, end) = self.list(depth + 1)?;
        let otherwise = match end {
            Some((k, _)) if k == "end" => Vec::new(),
            Some((_, else_line)) => {
                // The `else` action's remaining tokens were pushed back as an item.
                let rest = match self.items.get_mut(self.at) {
                    Some(Item::Action(t, _)) => std::mem::take(t),
                    _ => Vec::new(),
                };
                self.at += 1;
                if rest.is_empty() {
                    let (otherwise, end) = self.list(depth + 1)?;
                    if !matches!(end, Some((ref k, _)) if k == "end") {
                        return Err(Error::at(else_line, "missing {{end}}"));
                    }
                    otherwise
                } else if kind == "if" && rest.first() == Some(&Tok::Ident("if".into())) {
                    // `else if`: a nested `if` that shares this block's `{{end}}`.
                    let inner = pipeline(&rest[1..], else_line, depth)?;
                    vec![self.block("if", inner, else_line, depth + 1)?]
                } else if kind == "with" && rest.first() == Some(&Tok::Ident("with".into())) {
                    let inner = pipeline(&rest[1..], else_line, depth)?;
                    vec![self.block("with", inner, else_line, depth + 1)?]
                } else {
                    return Err(Error::at(else_line, "unexpected tokens after else"));
                }
            }
            None => {
                return Err(Error::at(
                    line,
                    format!("missing {{{{end}}}} for {{{{{kind}}}}}"),
                ))
            }
        };
        Ok(match kind {
            "if" => Node::If {
                pipe,
                then: body,
                otherwise,
            },
            "range" => Node::Range {
                pipe,
                body,
                otherwise,
            },
            _ => Node::With {
                pipe,
                body,
                otherwise,
            },
        })
    }
}

/// `[$a[, $b] :=|=] cmd | cmd …`
fn pipeline(toks: &[Tok], line: usize, depth: usize) -> Result<Pipe, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::at(line, "expression nested too deeply"));
    }
    let mut vars = Vec::new();
    let mut assign = false;
    let mut rest = toks;
    let decl_end = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(end) = decl_end {
        let names = &toks[..end];
        let ok = names.iter().enumerate().all(|(i, t)| match t {
            Tok::Var(_) => i % 2 == 0,
            Tok::Comma => i % 2 == 1,
            _ => false,
        });
        if ok && !names.is_empty() && names.len() <= 3 {
            vars = names
                .iter()
                .filter_map(|t| match t {
                    Tok::Var(v) => Some(v.clone()),
                    _ => None,
                })
                .collect();
            assign = toks[end] == Tok::Assign;
            rest = &toks[end + 1..];
        }
    }
    let mut cmds = Vec::new();
    let mut i = 0;
    let mut args = Vec::new();
    while i < rest.len() {
        match &rest[i] {
            Tok::Pipe => {
                if args.is_empty() {
                    return Err(Error::at(line, "missing command before |"));
                }
                cmds.push(Cmd {
                    args: std::mem::take(&mut args),
                });
                i += 1;
            }
            _ => {
                let (op, n) = operand(&rest[i..], line, depth)?;
                args.push(op);
                i += n;
            }
        }
    }
    if args.is_empty() {
        return Err(Error::at(line, "missing value for command"));
    }
    cmds.push(Cmd { args });
    Ok(Pipe {
        line,
        vars,
        assign,
        cmds,
    })
}

fn operand(toks: &[Tok], line: usize, depth: usize) -> Result<(Operand, usize), Error> {
    let (term, mut n, mut chain) = match &toks[0] {
        Tok::Dot => (Term::Dot, 1, Vec::new()),
        Tok::Field(f, _) => (Term::Dot, 1, vec![f.clone()]),
        Tok::Var(v) => (Term::Var(v.clone()), 1, Vec::new()),
        Tok::Ident(f) if super::funcs::known(f) => (Term::Func(f.clone()), 1, Vec::new()),
        Tok::Ident(f) => return Err(Error::at(line, format!("function {f:?} not defined"))),
        Tok::Lit(v) => (Term::Lit(v.clone()), 1, Vec::new()),
        Tok::Open => {
            let mut level = 0;
            let close = toks
                .iter()
                .position(|t| {
                    match t {
                        Tok::Open => level += 1,
                        Tok::Close => level -= 1,
                        _ => {}
                    }
                    level == 0
                })
                .ok_or_else(|| Error::at(line, "unclosed left paren"))?;
            let inner = pipeline(&toks[1..close], line, depth + 1)?;
            (Term::Sub(Box::new(inner)), close + 1, Vec::new())
        }
        other => {
            return Err(Error::at(
                line,
                format!("unexpected {} in operand", describe(other)),
            ))
        }
    };
    while let Some(Tok::Field(f, true)) = toks.get(n) {
        chain.push(f.clone());
        n += 1;
    }
    Ok((Operand { term, chain }, n))
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::Close => "right paren",
        Tok::Pipe => "|",
        Tok::Declare => ":=",
        Tok::Assign => "=",
        Tok::Comma => "comma",
        _ => "token",
    }
}
