//! ServiceAccount tokens: JWTs signed with the cluster's ServiceAccount key (ES256), issued through the TokenRequest
//! subresource (`kubectl create token`) and accepted as bearer tokens. The public key is published as OpenID
//! Connect issuer discovery (`/.well-known/openid-configuration`, `/openid/v1/jwks`), so systems outside the
//! cluster (Vault, cloud workload identity) can verify the tokens themselves.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

/// The issuer and default audience, as kube-apiserver's defaults.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Where the discovery document and the key set are served (upstream's paths).
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// The claims kube-apiserver puts in a bound ServiceAccount token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Reference>,
    /// The node a token is bound to, or the node of the pod it is bound to (upstream adds it for scheduled pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Reference>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub uid: String,
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Names the key in each token's header and in the key set, so a verifier picks the right key after a
    /// rotation. Upstream's choice: the unpadded base64url SHA-256 of the public key's DER (PKIX) encoding.
    key_id: String,
    /// The public key as a JSON Web Key Set (RFC 7517).
    jwks: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid ServiceAccount signing key: {0}")]
pub struct KeyError(String);

/// Why a bearer token is not a valid ServiceAccount token of this cluster; the messages are upstream's, which a
/// TokenReview reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JWT of this cluster's issuer: garbage, or a token for another authenticator. Upstream says nothing
    /// about these, so the next authenticator may have its say.
    #[error("not a ServiceAccount token of this cluster")]
    NotOurs,
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("invalid signature")]
    BadSignature,
    /// The token is for none of the audiences asked for (Go's `%q` spelling of both lists).
    #[error("token audiences {} is invalid for the target audiences {}", go_quoted(.token), go_quoted(.wanted))]
    Audience { token: Vec<String>, wanted: Vec<String> },
}

fn key_id(public_key_pem: &str) -> Result<String, KeyError> {
    let body: String = public_key_pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|error| KeyError(format!("public key PEM: {error}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)))
}

/// A string list as Go's `%q` prints it: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

impl TokenIssuer {
    pub fn new(private_key_pem: &str, public_key_pem: &str) -> Result<TokenIssuer, KeyError> {
        let error = |error: jsonwebtoken::errors::Error| KeyError(error.to_string());
        let encoding = EncodingKey::from_ec_pem(private_key_pem.as_bytes()).map_err(error)?;
        let key_id = key_id(public_key_pem)?;
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(error)?;
        jwk.common.key_id = Some(key_id.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let jwks = json!({"keys": [jwk]});
        Ok(TokenIssuer {
            encoding,
            decoding: DecodingKey::from_ec_pem(public_key_pem.as_bytes()).map_err(error)?,
            key_id,
            jwks,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|error| KeyError(error.to_string()))
    }

    /// The OpenID Connect discovery document, as upstream writes it when no `--service-account-jwks-uri` is set:
    /// the key set is at this server's own address.
    pub fn openid_configuration(&self, server_address: &str) -> Value {
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("https://{server_address}{JWKS_PATH}"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The public signing key as a JSON Web Key Set.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The claims of a token this cluster signed, still valid, for one of `audiences`.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims, Rejection> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(Algorithm::ES256);
        // Checked below, so the rejection can name the token's audiences as upstream's does.
        validation.validate_aud = false;
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => data.claims,
            Err(error) => {
                return Err(match error.kind() {
                    ErrorKind::ExpiredSignature => Rejection::Expired,
                    ErrorKind::ImmatureSignature => Rejection::NotValidYet,
                    ErrorKind::InvalidSignature => Rejection::BadSignature,
                    _ => Rejection::NotOurs,
                });
            }
        };
        if !claims.aud.iter().any(|audience| audiences.contains(&audience.as_str())) {
            return Err(Rejection::Audience {
                token: claims.aud,
                wanted: audiences.iter().map(|audience| audience.to_string()).collect(),
            });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let directory = tempfile::tempdir().unwrap();
        let pki = kaasd_tunnel::pki::ClusterPki::load_or_create(directory.path(), &Default::default()).unwrap();
        TokenIssuer::new(&pki.service_account_key_pem, &pki.service_account_public_key_pem().unwrap()).unwrap()
    }

    fn claims(expires_in: i64) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:default:robot".into(),
            aud: vec![ISSUER.into()],
            exp: now + expires_in,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: Reference { name: "robot".into(), uid: "u".into() },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_for_their_audience() {
        let issuer = issuer();
        let token = issuer.sign(&claims(600)).unwrap();
        assert_eq!(issuer.verify(&token, &[ISSUER]).unwrap().sub, "system:serviceaccount:default:robot");
        assert_eq!(
            issuer.verify(&token, &["https://elsewhere"]).unwrap_err().to_string(),
            format!("token audiences [\"{ISSUER}\"] is invalid for the target audiences [\"https://elsewhere\"]")
        );
        assert_eq!(issuer.verify(&issuer.sign(&claims(-10)).unwrap(), &[ISSUER]), Err(Rejection::Expired));
        let other = self::issuer();
        assert_eq!(other.verify(&token, &[ISSUER]), Err(Rejection::BadSignature), "another cluster's key");
        assert_eq!(issuer.verify("not.a.token", &[ISSUER]), Err(Rejection::NotOurs));
    }

    /// What an outside verifier does: take the token header's `kid`, find that key in the published set, and check
    /// the signature with it alone.
    #[test]
    fn the_published_key_set_verifies_tokens() {
        let issuer = issuer();
        let token = issuer.sign(&claims(600)).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.expect("tokens name their key");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(issuer.jwks().clone()).unwrap();
        let jwk = set.find(&kid).expect("the token's key is in the set");
        assert_eq!(serde_json::to_value(jwk).unwrap()["use"], "sig");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[ISSUER]);
        let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims.sub, "system:serviceaccount:default:robot");
        // Another cluster's key has another id.
        assert_ne!(self::issuer().key_id, issuer.key_id);
        let discovery = issuer.openid_configuration("10.0.0.1:6443");
        assert_eq!(discovery["jwks_uri"], "https://10.0.0.1:6443/openid/v1/jwks");
        assert_eq!(discovery["issuer"], ISSUER);
    }
}
