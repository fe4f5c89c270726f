//! ESO's `jwkPublicKeyPem` and `jwkPrivateKeyPem`: a JSON Web Key (RSA, or EC on P-256, P-384,
//! P-521) as PEM, the public key as PKIX (`PUBLIC KEY`), the private key as PKCS #8
//! (`PRIVATE KEY`), the encodings Go's x509 package writes. Errors are fixed texts: a key's
//! parts never reach a message.

use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::BigUint;
use serde_json::{Map, Value};

/// The public key of a JWK that holds only a public key (as ESO, a private JWK is refused).
pub fn public_key_pem(jwk: &str) -> Result<String, String> {
    let key = parse(jwk)?;
    if key.contains_key("d") {
        return Err("the JWK holds a private key; jwkPublicKeyPem takes a public one".into());
    }
    match kty(&key)? {
        "RSA" => {
            let k = rsa::RsaPublicKey::new(big(&key, "n")?, big(&key, "e")?)
                .map_err(|_| "not a valid RSA public key".to_string())?;
            pem(k.to_public_key_pem(LineEnding::LF))
        }
        _ => match crv(&key)? {
            "P-256" => pem(p256::PublicKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_public_key_pem(LineEnding::LF)),
            "P-384" => pem(p384::PublicKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_public_key_pem(LineEnding::LF)),
            _ => pem(p521::PublicKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_public_key_pem(LineEnding::LF)),
        },
    }
}

/// The private key of a private JWK, as PKCS #8.
pub fn private_key_pem(jwk: &str) -> Result<String, String> {
    let key = parse(jwk)?;
    if !key.contains_key("d") {
        return Err("the JWK holds no private key".into());
    }
    let der = match kty(&key)? {
        "RSA" => {
            let mut primes = Vec::new();
            if key.contains_key("p") && key.contains_key("q") {
                primes = vec![big(&key, "p")?, big(&key, "q")?];
            }
            let k = rsa::RsaPrivateKey::from_components(
                big(&key, "n")?,
                big(&key, "e")?,
                big(&key, "d")?,
                primes,
            )
            .map_err(|_| "not a valid RSA private key".to_string())?;
            k.validate()
                .map_err(|_| "not a valid RSA private key".to_string())?;
            k.to_pkcs8_pem(LineEnding::LF)
        }
        _ => match crv(&key)? {
            "P-256" => p256::SecretKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_pkcs8_pem(LineEnding::LF),
            "P-384" => p384::SecretKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_pkcs8_pem(LineEnding::LF),
            _ => p521::SecretKey::from_jwk_str(&ec_members(&key))
                .map_err(ec)?
                .to_pkcs8_pem(LineEnding::LF),
        },
    };
    der.map(|pem| pem.to_string())
        .map_err(|_| "the key cannot be encoded".to_string())
}

fn parse(jwk: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(jwk) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("not a JSON Web Key (a JSON object)".into()),
    }
}

fn kty(key: &Map<String, Value>) -> Result<&str, String> {
    match key.get("kty").and_then(Value::as_str) {
        Some(k @ ("RSA" | "EC")) => Ok(k),
        Some(_) => Err("unsupported key type (kty): RSA and EC keys are supported".into()),
        None => Err("the JWK has no kty".into()),
    }
}

/// The EC key's own members only: RustCrypto's JWK parser refuses any other (`kid`, `use`,
/// `key_ops`), which JWKs from key stores carry and ESO ignores.
fn ec_members(key: &Map<String, Value>) -> String {
    let members: Map<String, Value> = ["kty", "crv", "x", "y", "d"]
        .iter()
        .filter_map(|m| Some((m.to_string(), key.get(*m)?.clone())))
        .collect();
    Value::Object(members).to_string()
}

fn crv(key: &Map<String, Value>) -> Result<&str, String> {
    match key.get("crv").and_then(Value::as_str) {
        Some(c @ ("P-256" | "P-384" | "P-521")) => Ok(c),
        _ => Err("unsupported curve (crv): P-256, P-384 and P-521 are supported".into()),
    }
}

/// A base64url member as a big unsigned integer.
fn big(key: &Map<String, Value>, member: &str) -> Result<BigUint, String> {
    let text = key
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the JWK has no {member}"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("the JWK's {member} is not base64url"))?;
    Ok(BigUint::from_bytes_be(&bytes))
}

fn ec<E>(_: E) -> String {
    "not a valid EC key for its curve".into()
}

fn pem<E>(r: Result<String, E>) -> Result<String, String> {
    r.map_err(|_| "the key cannot be encoded".to_string())
}

#[cfg(test)]
mod tests {
    //! Keys and outputs from ESO's own tests (pkg/template/v2/template_test.go).
    use super::*;

    const PUB_RSA: &str = r#"{"kid":"ex","kty":"RSA","key_ops":["sign","verify","wrapKey","unwrapKey","encrypt","decrypt"],"n":"p2VQo8qCfWAZmdWBVaYuYb-a-tWWm78K6Sr9poCvNcmv8rUPSLACxitQWR8gZaSH1DklVkqz-Ed8Cdlf8lkDg4Ex5tkB64jRdC1Uvn4CDpOH6cp-N2s8hTFLqy9_YaDmyQS7HiqthOi9oVjil1VMeWfaAbClGtFt6UnKD0Vb_DvLoWYQSqlhgBArFJi966b4E1pOq5Ad02K8pHBDThlIIx7unibLehhDU6q3DCwNH_OOLx6bgNtmvGYJDd1cywpkLQ3YzNCUPWnfMBJRP3iQP_WI21uP6cvo0DqBPBM4wvVzHbCT0vnIflwkbgEWkq1FprqAitZlop9KjLqzjp9vyQ","e":"AQAB"}"#;
    const PUB_RSA_PKIX: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAp2VQo8qCfWAZmdWBVaYu\nYb+a+tWWm78K6Sr9poCvNcmv8rUPSLACxitQWR8gZaSH1DklVkqz+Ed8Cdlf8lkD\ng4Ex5tkB64jRdC1Uvn4CDpOH6cp+N2s8hTFLqy9/YaDmyQS7HiqthOi9oVjil1VM\neWfaAbClGtFt6UnKD0Vb/DvLoWYQSqlhgBArFJi966b4E1pOq5Ad02K8pHBDThlI\nIx7unibLehhDU6q3DCwNH/OOLx6bgNtmvGYJDd1cywpkLQ3YzNCUPWnfMBJRP3iQ\nP/WI21uP6cvo0DqBPBM4wvVzHbCT0vnIflwkbgEWkq1FprqAitZlop9KjLqzjp9v\nyQIDAQAB\n-----END PUBLIC KEY-----\n";
    const PRIV_RSA: &str = r#"{"kty" : "RSA","kid" : "cc34c0a0-bd5a-4a3c-a50d-a2a7db7643df","use" : "sig","n"   : "pjdss8ZaDfEH6K6U7GeW2nxDqR4IP049fk1fK0lndimbMMVBdPv_hSpm8T8EtBDxrUdi1OHZfMhUixGaut-3nQ4GG9nM249oxhCtxqqNvEXrmQRGqczyLxuh-fKn9Fg--hS9UpazHpfVAFnB5aCfXoNhPuI8oByyFKMKaOVgHNqP5NBEqabiLftZD3W_lsFCPGuzr4Vp0YS7zS2hDYScC2oOMu4rGU1LcMZf39p3153Cq7bS2Xh6Y-vw5pwzFYZdjQxDn8x8BG3fJ6j8TGLXQsbKH1218_HcUJRvMwdpbUQG5nvA2GXVqLqdwp054Lzk9_B_f1lVrmOKuHjTNHq48w","e"   : "AQAB","d"   : "ksDmucdMJXkFGZxiomNHnroOZxe8AmDLDGO1vhs-POa5PZM7mtUPonxwjVmthmpbZzla-kg55OFfO7YcXhg-Hm2OWTKwm73_rLh3JavaHjvBqsVKuorX3V3RYkSro6HyYIzFJ1Ek7sLxbjDRcDOj4ievSX0oN9l-JZhaDYlPlci5uJsoqro_YrE0PRRWVhtGynd-_aWgQv1YzkfZuMD-hJtDi1Im2humOWxA4eZrFs9eG-whXcOvaSwO4sSGbS99ecQZHM2TcdXeAs1PvjVgQ_dKnZlGN3lTWoWfQP55Z7Tgt8Nf1q4ZAKd-NlMe-7iqCFfsnFwXjSiaOa2CRGZn-Q","p"   : "4A5nU4ahEww7B65yuzmGeCUUi8ikWzv1C81pSyUKvKzu8CX41hp9J6oRaLGesKImYiuVQK47FhZ--wwfpRwHvSxtNU9qXb8ewo-BvadyO1eVrIk4tNV543QlSe7pQAoJGkxCia5rfznAE3InKF4JvIlchyqs0RQ8wx7lULqwnn0","q"   : "ven83GM6SfrmO-TBHbjTk6JhP_3CMsIvmSdo4KrbQNvp4vHO3w1_0zJ3URkmkYGhz2tgPlfd7v1l2I6QkIh4Bumdj6FyFZEBpxjE4MpfdNVcNINvVj87cLyTRmIcaGxmfylY7QErP8GFA-k4UoH_eQmGKGK44TRzYj5hZYGWIC8","dp"  : "lmmU_AG5SGxBhJqb8wxfNXDPJjf__i92BgJT2Vp4pskBbr5PGoyV0HbfUQVMnw977RONEurkR6O6gxZUeCclGt4kQlGZ-m0_XSWx13v9t9DIbheAtgVJ2mQyVDvK4m7aRYlEceFh0PsX8vYDS5o1txgPwb3oXkPTtrmbAGMUBpE","dq"  : "mxRTU3QDyR2EnCv0Nl0TCF90oliJGAHR9HJmBe__EjuCBbwHfcT8OG3hWOv8vpzokQPRl5cQt3NckzX3fs6xlJN4Ai2Hh2zduKFVQ2p-AF2p6Yfahscjtq-GY9cB85NxLy2IXCC0PF--Sq9LOrTE9QV988SJy_yUrAjcZ5MmECk","qi"  : "ldHXIrEmMZVaNwGzDF9WG8sHj2mOZmQpw9yrjLK9hAsmsNr5LTyqWAqJIYZSwPTYWhY4nu2O0EY9G9uYiqewXfCKw_UngrJt8Xwfq1Zruz0YY869zPN4GiE9-9rzdZB33RBw8kIOquY3MK74FMwCihYx_LiU2YTHkaoJ3ncvtvg"}"#;
    const PRIV_RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIIEwAIBADANBgkqhkiG9w0BAQEFAASCBKowggSmAgEAAoIBAQCmN2yzxloN8Qfo\nrpTsZ5bafEOpHgg/Tj1+TV8rSWd2KZswxUF0+/+FKmbxPwS0EPGtR2LU4dl8yFSL\nEZq637edDgYb2czbj2jGEK3Gqo28ReuZBEapzPIvG6H58qf0WD76FL1SlrMel9UA\nWcHloJ9eg2E+4jygHLIUowpo5WAc2o/k0ESppuIt+1kPdb+WwUI8a7OvhWnRhLvN\nLaENhJwLag4y7isZTUtwxl/f2nfXncKrttLZeHpj6/DmnDMVhl2NDEOfzHwEbd8n\nqPxMYtdCxsofXbXz8dxQlG8zB2ltRAbme8DYZdWoup3CnTngvOT38H9/WVWuY4q4\neNM0erjzAgMBAAECggEBAJLA5rnHTCV5BRmcYqJjR566DmcXvAJgywxjtb4bPjzm\nuT2TO5rVD6J8cI1ZrYZqW2c5WvpIOeThXzu2HF4YPh5tjlkysJu9/6y4dyWr2h47\nwarFSrqK191d0WJEq6Oh8mCMxSdRJO7C8W4w0XAzo+Inr0l9KDfZfiWYWg2JT5XI\nubibKKq6P2KxND0UVlYbRsp3fv2loEL9WM5H2bjA/oSbQ4tSJtobpjlsQOHmaxbP\nXhvsIV3Dr2ksDuLEhm0vfXnEGRzNk3HV3gLNT741YEP3Sp2ZRjd5U1qFn0D+eWe0\n4LfDX9auGQCnfjZTHvu4qghX7JxcF40omjmtgkRmZ/kCgYEA4A5nU4ahEww7B65y\nuzmGeCUUi8ikWzv1C81pSyUKvKzu8CX41hp9J6oRaLGesKImYiuVQK47FhZ++wwf\npRwHvSxtNU9qXb8ewo+BvadyO1eVrIk4tNV543QlSe7pQAoJGkxCia5rfznAE3In\nKF4JvIlchyqs0RQ8wx7lULqwnn0CgYEAven83GM6SfrmO+TBHbjTk6JhP/3CMsIv\nmSdo4KrbQNvp4vHO3w1/0zJ3URkmkYGhz2tgPlfd7v1l2I6QkIh4Bumdj6FyFZEB\npxjE4MpfdNVcNINvVj87cLyTRmIcaGxmfylY7QErP8GFA+k4UoH/eQmGKGK44TRz\nYj5hZYGWIC8CgYEAlmmU/AG5SGxBhJqb8wxfNXDPJjf//i92BgJT2Vp4pskBbr5P\nGoyV0HbfUQVMnw977RONEurkR6O6gxZUeCclGt4kQlGZ+m0/XSWx13v9t9DIbheA\ntgVJ2mQyVDvK4m7aRYlEceFh0PsX8vYDS5o1txgPwb3oXkPTtrmbAGMUBpECgYEA\nmxRTU3QDyR2EnCv0Nl0TCF90oliJGAHR9HJmBe//EjuCBbwHfcT8OG3hWOv8vpzo\nkQPRl5cQt3NckzX3fs6xlJN4Ai2Hh2zduKFVQ2p+AF2p6Yfahscjtq+GY9cB85Nx\nLy2IXCC0PF++Sq9LOrTE9QV988SJy/yUrAjcZ5MmECkCgYEAldHXIrEmMZVaNwGz\nDF9WG8sHj2mOZmQpw9yrjLK9hAsmsNr5LTyqWAqJIYZSwPTYWhY4nu2O0EY9G9uY\niqewXfCKw/UngrJt8Xwfq1Zruz0YY869zPN4GiE9+9rzdZB33RBw8kIOquY3MK74\nFMwCihYx/LiU2YTHkaoJ3ncvtvg=\n-----END PRIVATE KEY-----\n";
    const PUB_EC: &str = r#"{"kid":"https://kv-test-mj.vault.azure.net/keys/ec-p-521/e3d0e9c179b54988860c69c6ae172c65","kty":"EC","key_ops":["sign","verify"],"crv":"P-521","x":"AedOAtb7H7Oz1C_cPKI_R4CN_eai5nteY6KFW07FOoaqgQfVCSkQDK22fCOiMT_28c8LZYJRsiIFz_IIbQUW7bXj","y":"AOnchHnmBphIWXvanmMAmcCDkaED6ycW8GsAl9fQ43BMVZTqcTkJYn6vGnhn7MObizmkNSmgZYTwG-vZkIg03HHs"}"#;
    const PUB_EC_PKIX: &str = "-----BEGIN PUBLIC KEY-----\nMIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQB504C1vsfs7PUL9w8oj9HgI395qLm\ne15jooVbTsU6hqqBB9UJKRAMrbZ8I6IxP/bxzwtlglGyIgXP8ghtBRbtteMA6dyE\neeYGmEhZe9qeYwCZwIORoQPrJxbwawCX19DjcExVlOpxOQlifq8aeGfsw5uLOaQ1\nKaBlhPAb69mQiDTccew=\n-----END PUBLIC KEY-----\n";
    const PRIV_EC: &str = r#"{"kty": "EC","kid": "rie3pHe8u8gjSa0IaJfqk7_iEfHeYfDYx-Bqi7vQc0s","crv": "P-256","x": "fDjg3Nq4jPf8IOZ0277aPVal_8iXySnzLUJAZghUzZM","y": "d863PeyBOK_Q4duiSmWwgIRzi1RPlFZTR-vACMlPg-Q","d": "jJs5xsoHUetdMabtt8H2KyX5T92nGul1chFeMT5hlr0"}"#;
    const PRIV_EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjJs5xsoHUetdMabt\nt8H2KyX5T92nGul1chFeMT5hlr2hRANCAAR8OODc2riM9/wg5nTbvto9VqX/yJfJ\nKfMtQkBmCFTNk3fOtz3sgTiv0OHbokplsICEc4tUT5RWU0frwAjJT4Pk\n-----END PRIVATE KEY-----\n";

    #[test]
    fn esos_vectors() {
        assert_eq!(public_key_pem(PUB_RSA).unwrap(), PUB_RSA_PKIX);
        assert_eq!(private_key_pem(PRIV_RSA).unwrap(), PRIV_RSA_PKCS8);
        assert_eq!(public_key_pem(PUB_EC).unwrap(), PUB_EC_PKIX);
        assert_eq!(private_key_pem(PRIV_EC).unwrap(), PRIV_EC_PKCS8);
    }

    #[test]
    fn refusals_name_no_key_material() {
        for (jwk, private) in [
            (PRIV_RSA, false),
            (PUB_RSA, true),
            (PRIV_EC, false),
            (PUB_EC, true),
            ("not json", false),
            (r#"{"kty":"oct","k":"c2VjcmV0LXZhbHVl"}"#, true),
            (
                r#"{"kty":"EC","crv":"P-256","x":"c2VjcmV0LXZhbHVl","y":"c2VjcmV0LXZhbHVl"}"#,
                false,
            ),
            (r#"{"kty":"RSA","n":"!!!","e":"AQAB"}"#, false),
        ] {
            let err = if private {
                private_key_pem(jwk)
            } else {
                public_key_pem(jwk)
            }
            .unwrap_err();
            for secret in ["c2VjcmV0", "secret", "ksDmuc", "jJs5xs", "p2VQo8", "!!!"] {
                assert!(!err.contains(secret), "{err}");
            }
        }
    }
}
