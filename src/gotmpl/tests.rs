//! Go's own `text/template` cases (exec_test.go, parse_test.go), re-expressed, and the cases of
//! ESO's `pkg/template/v2` tests for the functions served here.

use serde_json::{json, Value};

use super::{render, Limits};

fn ok(text: &str, data: Value) -> String {
    render(text, &data, &Limits::default()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(text: &str, data: Value) -> String {
    render(text, &data, &Limits::default())
        .map(|out| panic!("{text:?} rendered {out:?}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn go_exec_cases() {
    let cases: &[(&str, Value, &str)] = &[
        ("", json!(null), ""),
        ("some text", json!(null), "some text"),
        ("-{{.}}-", json!("hello"), "-hello-"),
        ("{{.one}}", json!({"one": 1}), "1"),
        ("{{.a.b}}", json!({"a": {"b": "deep"}}), "deep"),
        ("{{if true}}TRUE{{end}}", json!(null), "TRUE"),
        ("{{if false}}TRUE{{else}}FALSE{{end}}", json!(null), "FALSE"),
        (
            "{{if 0}}a{{else if eq 1 2}}b{{else if eq 1 1}}c{{else}}d{{end}}",
            json!(null),
            "c",
        ),
        ("{{if .}}non-empty{{end}}", json!([]), ""),
        (
            "{{if \"\"}}x{{else}}empty string is false{{end}}",
            json!(null),
            "empty string is false",
        ),
        // Maps range in key order, as Go sorts them.
        (
            "{{range $k, $v := .}}{{$k}}={{$v}};{{end}}",
            json!({"b": "2", "a": "1", "c": "3"}),
            "a=1;b=2;c=3;",
        ),
        ("{{range .}}<{{.}}>{{end}}", json!(["x", "y"]), "<x><y>"),
        (
            "{{range $i, $e := .}}{{$i}}:{{$e}} {{end}}",
            json!(["x", "y"]),
            "0:x 1:y ",
        ),
        ("{{range .}}x{{else}}empty{{end}}", json!([]), "empty"),
        (
            "{{range .}}{{if eq . 3}}{{break}}{{end}}{{.}}{{end}}",
            json!([1, 2, 3, 4]),
            "12",
        ),
        (
            "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}",
            json!([1, 2, 3]),
            "13",
        ),
        ("{{with .x}}{{.}}{{end}}", json!({"x": "v"}), "v"),
        (
            "{{with .x}}{{.}}{{else}}none{{end}}",
            json!({"x": ""}),
            "none",
        ),
        ("{{$x := 1}}{{$x}}{{$x = 2}}{{$x}}", json!(null), "12"),
        ("{{range .}}{{$.k}}{{end}}", json!({"k": "K"}), "K"),
        ("{{with $x := .a}}{{$x}}{{end}}", json!({"a": "A"}), "A"),
        ("a {{- 3 -}} b", json!(null), "a3b"),
        ("a {{- /* comment */ -}} b", json!(null), "ab"),
        ("a{{/* comment */}}b", json!(null), "ab"),
        ("{{\"x\" | printf \"%s-%s\" \"y\"}}", json!(null), "y-x"),
        ("{{(index . \"a\")}}", json!({"a": "A"}), "A"),
        ("{{(dict \"a\" 1).a}}", json!(null), "1"),
        ("{{and 1 0 2}}", json!(null), "0"),
        ("{{or 0 \"\" \"x\"}}", json!(null), "x"),
        ("{{and 1 2}}", json!(null), "2"),
        ("{{not true}}", json!(null), "false"),
        ("{{len .}}", json!("abc"), "3"),
        ("{{index . 1}}", json!(["a", "b"]), "b"),
        ("{{index . \"a\" \"b\"}}", json!({"a": {"b": "c"}}), "c"),
        ("{{print 1 2 \"a\" 3}}", json!(null), "1 2a3"),
        ("{{println \"a\" 1}}", json!(null), "a 1\n"),
        (
            "{{printf \"%q %d %5s|%-3s|%03d|%x|%%\" \"a\" 7 \"b\" \"c\" 5 255}}",
            json!(null),
            "\"a\" 7     b|c  |005|ff|%",
        ),
        ("{{printf \"%.2f\" 3.14159}}", json!(null), "3.14"),
        ("{{eq \"a\" \"b\" \"a\"}}", json!(null), "true"),
        (
            "{{lt 1 2}} {{ge 2 2}} {{ne \"a\" \"a\"}}",
            json!(null),
            "true true false",
        ),
        ("{{`raw \\n`}}", json!(null), "raw \\n"),
        ("{{\"esc\\t\\\"q\\\"\"}}", json!(null), "esc\t\"q\""),
        ("{{0x1F}} {{-3}} {{1.5}}", json!(null), "31 -3 1.5"),
        ("{{nil}}", json!(null), "<nil>"),
        (
            "{{ dict \"b\" 1 \"a\" \"x\" }}",
            json!(null),
            "map[a:x b:1]",
        ),
        ("{{ list 1 \"a\" }}", json!(null), "[1 a]"),
        ("{{urlquery \"a b&c\"}}", json!(null), "a+b%26c"),
    ];
    for (text, data, want) in cases {
        assert_eq!(&ok(text, data.clone()), want, "{text}");
    }
}

#[test]
fn go_errors_name_the_problem_not_the_value() {
    let data = json!({"secret": "s3cr3t-value"});
    for (text, want) in [
        ("{{.missing}}", "map has no entry for key \"missing\""),
        ("{{.secret.x}}", "can't evaluate field x in type string"),
        ("{{nope}}", "function \"nope\" not defined"),
        (
            "{{define \"x\"}}{{end}}",
            "named templates are not supported",
        ),
        ("{{template \"x\"}}", "named templates are not supported"),
        ("{{if true}}", "missing {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{.secret | b64dec}}", "error calling b64dec: not base64"),
        (
            "{{range .secret}}{{end}}",
            "range can't iterate over string",
        ),
        ("{{index .secret 1}}", "can't index item of type string"),
        ("{{eq .secret 1}}", "incompatible types for comparison"),
        ("{{$x}}", "undefined variable: $x"),
        ("{{.secret 1}}", "can't give argument to non-function"),
        (
            "{{b64enc}}",
            "wrong number of args for b64enc: want 1 got 0",
        ),
        ("{{fail .secret}}", "the template called fail"),
        ("{{\"unterminated}}", "unterminated quoted string"),
        ("{{(1}}", "unclosed left paren"),
    ] {
        let e = err(text, data.clone());
        assert!(e.contains(want), "{text}: {e}");
        assert!(!e.contains("s3cr3t"), "{text}: a value in {e}");
    }
}

#[test]
fn go_prints_json_numbers_as_float64() {
    for (json_text, want) in [
        ("8080", "8080"),
        ("1.5", "1.5"),
        ("1000000", "1e+06"),
        ("123456", "123456"),
        ("0.00001", "1e-05"),
        ("1e21", "1e+21"),
    ] {
        let t = format!("{{{{ (fromJson `{{\"n\": {json_text}}}`).n }}}}");
        assert_eq!(ok(&t, json!(null)), want, "{json_text}");
    }
}

// ESO pkg/template/v2 template_test.go, the cases of the functions served here.
#[test]
fn eso_template_functions() {
    let data = json!({
        "secret": "MTIzNA==",
        "json": "{\"foo\": \"bar\", \"n\": [1, 2]}",
        "user": "alice",
        "pass": "p@ss",
        "registry": "registry.example.com",
        "multi": "a\nb",
        "jwk": r#"{"kty":"EC","crv":"P-256","x":"fDjg3Nq4jPf8IOZ0277aPVal_8iXySnzLUJAZghUzZM","y":"d863PeyBOK_Q4duiSmWwgIRzi1RPlFZTR-vACMlPg-Q"}"#,
        "pem": "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nKKK\n-----END PRIVATE KEY-----\n",
    });
    let cases = [
        ("{{ .secret | b64dec }}", "1234"),
        ("{{ .user | b64enc }}", "YWxpY2U="),
        ("{{ .json | fromJson | toJson }}", "{\"foo\":\"bar\",\"n\":[1,2]}"),
        ("{{ (.json | fromJson).foo }}", "bar"),
        ("{{ .json | fromJson | toYaml }}", "foo: bar\nn:\n- 1\n- 2"),
        ("{{ (\"foo: bar\" | fromYaml).foo }}", "bar"),
        (
            "{\"auths\":{\"{{ .registry }}\":{\"auth\":\"{{ printf \"%s:%s\" .user .pass | b64enc }}\"}}}",
            "{\"auths\":{\"registry.example.com\":{\"auth\":\"YWxpY2U6cEBzcw==\"}}}",
        ),
        ("{{ .user | upper }} {{ \"ABC\" | lower }} {{ \"  x \" | trim }}", "ALICE abc x"),
        ("{{ .multi | indent 2 }}", "  a\n  b"),
        ("{{ .multi | nindent 2 }}", "\n  a\n  b"),
        ("{{ .user | quote }} {{ .user | squote }}", "\"alice\" 'alice'"),
        ("{{ .missing | default \"d\" }}", "<error>"),
        ("{{ \"\" | default \"d\" }} {{ \"x\" | default \"d\" }}", "d x"),
        ("{{ \"a-b\" | replace \"-\" \"_\" }}", "a_b"),
        ("{{ \"prefix-x\" | trimPrefix \"prefix-\" }}{{ \"x.txt\" | trimSuffix \".txt\" }}", "xx"),
        ("{{ $m := dict \"k\" \"v\" }}{{ get $m \"k\" }}{{ hasKey $m \"k\" }}{{ hasKey $m \"z\" }}", "vtruefalse"),
        ("{{ list \"a\" \"b\" | join \",\" }}", "a,b"),
        ("{{ (split \":\" \"a:b\")._1 }}", "b"),
        ("{{ empty \"\" }} {{ empty \"x\" }}", "true false"),
        ("{{ .pem | filterPEM \"CERTIFICATE\" }}", "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"),
        ("{{ \"abc\" | sha256sum }}", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("{{ \"hello\" | trunc 3 }}", "hel"),
        ("{{ add 1 2 3 }}", "6"),
        ("{{ .jwk | jwkPrivateKeyPem }}", "<error>"),
    ];
    // Through a template, as ESO's `jwkPublicKeyPem` is used (ESO's vectors: gotmpl::jwk): the
    // SubjectPublicKeyInfo of P-256, then the point 04 || x || y.
    assert!(ok("{{ .jwk | jwkPublicKeyPem }}", data.clone()).starts_with(
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfDjg3Nq4jPf8IOZ0277aPVal/8iX\n"
    ));
    for (text, want) in cases {
        if want == "<error>" {
            assert!(render(text, &data, &Limits::default()).is_err(), "{text}");
        } else {
            assert_eq!(ok(text, data.clone()), want, "{text}");
        }
    }
}

#[test]
fn bounds_stop_runaway_templates() {
    let small = Limits {
        fuel: 10_000,
        output: 1000,
        template: 100,
    };
    let e = render("{{range 1000000}}{{end}}", &json!(null), &small).unwrap_err();
    assert!(e.message.contains("too many steps"), "{e}");
    let e = render("{{range 900}}xxxxxxxxxx{{end}}", &json!(null), &small).unwrap_err();
    assert!(e.message.contains("larger than 1000 bytes"), "{e}");
    let e = render(&"x".repeat(101), &json!(null), &small).unwrap_err();
    assert!(e.message.contains("template is larger"), "{e}");
    let e = render(
        "{{ repeat 100000000 \"x\" }}",
        &json!(null),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    let e = render(&format!("{{{{{deep}}}}}"), &json!(null), &Limits::default()).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");
    let deep = "{{if true}}".repeat(200) + &"{{end}}".repeat(200);
    assert!(render(&deep, &json!(null), &Limits::default()).is_err());
}
