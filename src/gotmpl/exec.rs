//! Runs a parsed template over data, as Go's `text/template` does with `missingkey=error`: maps
//! ranged and printed in key order, Go's truth and printing rules, variables scoped to their
//! block. Bounded: every step spends fuel, the output is capped, and no error carries a value.

use serde_json::{Map, Value};

use super::funcs;
use super::parse::{Cmd, Node, Operand, Pipe, Term};
use super::{Error, Limits};

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec<'a> {
    limits: &'a Limits,
    vars: Vec<(String, Value)>,
    out: String,
    fuel: u64,
    line: usize,
}

impl<'a> Exec<'a> {
    pub fn run(nodes: &[Node], data: &Value, limits: &'a Limits) -> Result<String, Error> {
        let mut e = Exec {
            limits,
            vars: vec![("$".into(), data.clone())],
            out: String::new(),
            fuel: limits.fuel,
            line: 0,
        };
        e.walk(nodes, data)?;
        Ok(e.out)
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::at(self.line, msg)
    }

    fn spend(&mut self) -> Result<(), Error> {
        if self.fuel == 0 {
            return Err(self.err("the template takes too many steps"));
        }
        self.fuel -= 1;
        Ok(())
    }

    fn write(&mut self, s: &str) -> Result<(), Error> {
        if self.out.len() + s.len() > self.limits.output {
            return Err(self.err(format!(
                "the output is larger than {} bytes",
                self.limits.output
            )));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, Error> {
        for node in nodes {
            self.spend()?;
            match node {
                Node::Text(t) => self.write(t)?,
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        let text = funcs::print(&v);
                        self.write(&text)?;
                    }
                }
                Node::If {
                    pipe,
                    then,
                    otherwise,
                } => {
                    let scope = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = if funcs::truth(&v) {
                        self.walk(then, dot)?
                    } else {
                        self.walk(otherwise, dot)?
                    };
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let scope = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = if funcs::truth(&v) {
                        self.walk(body, &v)?
                    } else {
                        self.walk(otherwise, dot)?
                    };
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let scope = self.vars.len();
                    self.range(pipe, body, otherwise, dot)?;
                    self.vars.truncate(scope);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), Error> {
        // The ranged value, without the declaration (set per element below).
        let plain = Pipe {
            vars: Vec::new(),
            ..pipe.clone()
        };
        let v = self.pipe(&plain, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(m) => sorted(m)
                .map(|(k, x)| (Value::String(k.clone()), x.clone()))
                .collect(),
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_i64().is_some() => {
                let n = n.as_i64().unwrap_or(0).max(0);
                if n as u64 > self.fuel {
                    return Err(self.err("the template takes too many steps"));
                }
                (0..n).map(|i| (Value::from(i), Value::from(i))).collect()
            }
            _ => return Err(self.err(format!("range can't iterate over {}", funcs::kind(&v)))),
        };
        if items.is_empty() {
            self.walk(otherwise, dot)?;
            return Ok(());
        }
        let scope = self.vars.len();
        for (key, value) in items {
            self.spend()?;
            self.vars.truncate(scope);
            match pipe.vars.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), value.clone())),
                [k, v, ..] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), value.clone()));
                }
            }
            match self.walk(body, &value)? {
                Flow::Break => break,
                Flow::Normal | Flow::Continue => {}
            }
        }
        Ok(())
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, Error> {
        self.line = pipe.line;
        let mut last: Option<Value> = None;
        for cmd in &pipe.cmds {
            self.spend()?;
            last = Some(self.cmd(cmd, dot, last)?);
        }
        let v = last.unwrap_or(Value::Null);
        match (pipe.vars.as_slice(), pipe.assign) {
            ([], _) => {}
            ([name], true) => {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| Error::at(pipe.line, format!("undefined variable: {name}")))?;
                slot.1 = v.clone();
            }
            (names, _) => {
                for name in names {
                    self.vars.push((name.clone(), v.clone()));
                }
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Value, last: Option<Value>) -> Result<Value, Error> {
        let first = &cmd.args[0];
        if let (Term::Func(name), true) = (&first.term, first.chain.is_empty()) {
            return self.call(name, &cmd.args[1..], dot, last);
        }
        if cmd.args.len() > 1 || last.is_some() {
            return Err(self.err("can't give argument to non-function"));
        }
        self.operand(first, dot)
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Operand],
        dot: &Value,
        last: Option<Value>,
    ) -> Result<Value, Error> {
        // `and` / `or` stop at the first argument that decides, as Go's do.
        if name == "and" || name == "or" {
            if args.is_empty() && last.is_none() {
                return Err(self.err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let mut v = Value::Null;
            for a in args {
                v = self.operand(a, dot)?;
                if funcs::truth(&v) == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(l) = last {
                v = l;
            }
            return Ok(v);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.operand(a, dot)?);
        }
        values.extend(last);
        let out = funcs::call(name, &values).map_err(|why| self.err(why))?;
        if let Value::String(s) = &out {
            if s.len() > self.limits.output {
                return Err(self.err(format!(
                    "{name} returned more than {} bytes",
                    self.limits.output
                )));
            }
        }
        Ok(out)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, Error> {
        let base = match &op.term {
            Term::Dot => dot.clone(),
            Term::Lit(v) => v.clone(),
            Term::Var(name) => self
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| self.err(format!("undefined variable: {name}")))?,
            Term::Func(name) => self.call(name, &[], dot, None)?,
            Term::Sub(p) => {
                let scope = self.vars.len();
                let v = self.pipe(p, dot)?;
                self.vars.truncate(scope);
                v
            }
        };
        let mut v = base;
        for field in &op.chain {
            v = match v {
                Value::Object(mut m) => m
                    .remove(field)
                    .ok_or_else(|| self.err(format!("map has no entry for key {field:?}")))?,
                Value::Null => return Err(self.err(format!("nil pointer evaluating .{field}"))),
                other => {
                    return Err(self.err(format!(
                        "can't evaluate field {field} in type {}",
                        funcs::kind(&other)
                    )))
                }
            };
        }
        Ok(v)
    }
}

/// A map's entries in key order (Go ranges and prints maps sorted).
pub fn sorted(m: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.into_iter()
}
