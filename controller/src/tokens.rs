//! ServiceAccount tokens: JWTs signed with the cluster's ServiceAccount key (ES256), issued through the TokenRequest
//! subresource (`kubectl create token`) and accepted as bearer tokens.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer and default audience, as kube-apiserver's defaults.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub uid: String,
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid ServiceAccount signing key: {0}")]
pub struct KeyError(String);

impl TokenIssuer {
    pub fn new(private_key_pem: &str, public_key_pem: &str) -> Result<TokenIssuer, KeyError> {
        Ok(TokenIssuer {
            encoding: EncodingKey::from_ec_pem(private_key_pem.as_bytes())
                .map_err(|error| KeyError(error.to_string()))?,
            decoding: DecodingKey::from_ec_pem(public_key_pem.as_bytes())
                .map_err(|error| KeyError(error.to_string()))?,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(|error| KeyError(error.to_string()))
    }

    /// The claims of a token this cluster signed, still valid, for one of `audiences`; `None` otherwise.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(audiences);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|data| data.claims)
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
            },
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_for_their_audience() {
        let issuer = issuer();
        let token = issuer.sign(&claims(600)).unwrap();
        assert_eq!(issuer.verify(&token, &[ISSUER]).unwrap().sub, "system:serviceaccount:default:robot");
        assert!(issuer.verify(&token, &["https://elsewhere"]).is_none());
        assert!(issuer.verify(&issuer.sign(&claims(-10)).unwrap(), &[ISSUER]).is_none());
        let other = self::issuer();
        assert!(other.verify(&token, &[ISSUER]).is_none(), "another cluster's key does not verify it");
        assert!(issuer.verify("not.a.token", &[ISSUER]).is_none());
    }
}
