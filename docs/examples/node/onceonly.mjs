// A small Onceonly client: private_key_jwt (RFC 7523), DPoP with server nonces
// (RFC 9449), the record query, and RFC 9457 problems. Written from
// docs/protocol.md; the section numbers below are that document's.

import { createHash, createHmac, createPrivateKey, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';

/** A refusal by the hub: an RFC 9457 problem document (docs/problems.md). */
export class Problem extends Error {
  constructor(body, response, stage) {
    super(`${body.title ?? 'HTTP ' + response.status}: ${body.detail ?? ''}`);
    this.type = body.type ?? 'about:blank'; // compare this, never the title
    this.title = body.title ?? response.statusText;
    this.status = body.status ?? response.status;
    this.detail = body.detail ?? '';
    this.error = body.error; // the OAuth error code, on token endpoint problems
    this.stage = stage; // 'token' or 'query'
    this.requestId = response.headers.get('x-request-id');
  }
}

/** The hub could not be reached, or answered something that is not the protocol. */
export class TransportError extends Error {}

/** The answer came, but its receipt does not hold: do not use the record. */
export class VerificationError extends Error {}

/** Read a private key: a JWK (or a JWKS holding one key) as JSON, or a PKCS#8/SEC1/PKCS#1 PEM. */
export async function loadClientKey(text, kid) {
  let jwk;
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const parsed = JSON.parse(trimmed);
    jwk = parsed.keys ? parsed.keys[0] : parsed;
  } else {
    jwk = createPrivateKey(trimmed).export({ format: 'jwk' });
  }
  // §2.1: ES256 for P-256, Ed25519 for Ed25519, PS256 for RSA.
  const alg = { EC: 'ES256', OKP: 'Ed25519', RSA: 'PS256' }[jwk.kty];
  const curve = { EC: 'P-256', OKP: 'Ed25519' }[jwk.kty];
  if (!alg || (curve && jwk.crv !== curve)) {
    throw new Error(`unsupported key: kty ${jwk.kty}, crv ${jwk.crv}`);
  }
  if (!jwk.d) throw new Error('the key file holds no private key');
  // The assertion's kid must name the key in the client's registered JWKS:
  // the one given, else the JWK's own kid, else the key's RFC 7638 thumbprint.
  const { d, p, q, dp, dq, qi, ...publicJwk } = jwk;
  kid = kid ?? jwk.kid ?? (await calculateJwkThumbprint(publicJwk));
  return { key: await importJWK({ ...jwk, alg }, alg), alg, kid };
}

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** RFC 8785 canonical JSON: JSON.stringify already writes numbers and strings as JCS does. */
export function canonicalJson(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort(); // UTF-16 code unit order, as RFC 8785 §3.2.3 asks
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
}

/** §3: the receipt's commitment must open on the record with the key the hub gave. */
export function commitmentOpens(record, receipt) {
  const mac = createHmac('sha256', Buffer.from(receipt.commitment_key, 'base64url'))
    .update(canonicalJson(record), 'utf8')
    .digest('base64url');
  return receipt.commitment === `hmac-sha256:${mac}`;
}

export class HubClient {
  /**
   * @param {string} hubUrl  where to send requests, e.g. https://hub.example.gov
   * @param {string} clientId  the client registered at the hub
   * @param {{key, alg, kid}} clientKey  from loadClientKey
   */
  constructor(hubUrl, clientId, clientKey, { timeoutMs = 30_000 } = {}) {
    this.hubUrl = hubUrl.replace(/\/+$/, '');
    this.clientId = clientId;
    this.clientKey = clientKey;
    this.timeoutMs = timeoutMs;
    this.nonce = undefined; // the latest DPoP-Nonce the hub sent (§2.4)
    this.tokens = new Map(); // scope -> { value, expiresAt }
  }

  /** §1: the issuer (audience of the assertion, base of every htu) and the token endpoint. */
  async discover() {
    if (this.metadata) return this.metadata;
    const response = await this.#fetch('/.well-known/oauth-authorization-server', { method: 'GET' });
    if (!response.ok) throw new TransportError(`discovery answered ${response.status}`);
    const metadata = await this.#json(response);
    this.issuer = metadata.issuer.replace(/\/+$/, '');
    this.tokenEndpoint = metadata.token_endpoint; // the token request's htu
    this.tokenPath = new URL(metadata.token_endpoint).pathname; // sent to hubUrl + this
    // §2.2: one DPoP key per process; the private half never leaves it.
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const { kty, crv, x, y } = await exportJWK(publicKey);
    this.dpop = { privateKey, jwk: { kty, crv, x, y } };
    return (this.metadata = metadata);
  }

  /** §2.2: a fresh proof for one request; htu names the hub by its issuer, no query or fragment. */
  async #proof(method, htu, accessToken) {
    const claims = { jti: b64url(randomBytes(16)), htm: method, htu, iat: now() };
    if (accessToken) claims.ath = b64url(createHash('sha256').update(accessToken).digest());
    if (this.nonce) claims.nonce = this.nonce;
    return new SignJWT(claims)
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: this.dpop.jwk })
      .sign(this.dpop.privateKey);
  }

  /** §2.1: a client assertion, used once. */
  async #assertion() {
    const { key, alg, kid } = this.clientKey;
    return new SignJWT({ jti: b64url(randomBytes(16)) })
      .setProtectedHeader({ alg, kid })
      .setIssuer(this.clientId)
      .setSubject(this.clientId)
      .setAudience(this.issuer) // the issuer string, not the token endpoint URL
      .setIssuedAt()
      .setExpirationTime(now() + 60)
      .sign(key);
  }

  async #fetch(path, init) {
    let response;
    try {
      const signal = AbortSignal.timeout(this.timeoutMs);
      response = await fetch(this.hubUrl + path, { ...init, signal });
    } catch (error) {
      throw new TransportError(`cannot reach ${this.hubUrl}: ${error.cause?.message ?? error.message}`);
    }
    const nonce = response.headers.get('dpop-nonce');
    if (nonce) this.nonce = nonce; // §2.4: keep the latest, put it in the next proof
    return response;
  }

  async #json(response) {
    try {
      return await response.json();
    } catch {
      throw new TransportError(`${response.url} answered ${response.status} without JSON`);
    }
  }

  async #problem(response, stage) {
    const type = response.headers.get('content-type') ?? '';
    let body = {};
    if (type.startsWith('application/problem+json') || type.startsWith('application/json')) {
      body = await response.json().catch(() => ({}));
    }
    return new Problem(body, response, stage);
  }

  /** §2.3: a DPoP-bound access token, kept until about 30 s before it expires. */
  async accessToken(scope = '') {
    const kept = this.tokens.get(scope);
    if (kept && kept.expiresAt - 30 > now()) return kept.value;
    await this.discover();
    for (let attempt = 0; ; attempt++) {
      const form = new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await this.#assertion(), // a new one on the retry: the first was spent
      });
      if (scope) form.set('scope', scope);
      const response = await this.#fetch(this.tokenPath, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          dpop: await this.#proof('POST', this.tokenEndpoint),
        },
        body: form,
      });
      if (response.ok) {
        const body = await this.#json(response);
        if (body.token_type !== 'DPoP') throw new TransportError(`token_type is ${body.token_type}, not DPoP`);
        this.tokens.set(scope, { value: body.access_token, expiresAt: now() + body.expires_in });
        return body.access_token;
      }
      const problem = await this.#problem(response, 'token');
      // §2.4: 400 use_dpop_nonce, with the nonce in DPoP-Nonce: retry once.
      if (problem.error === 'use_dpop_nonce' && attempt === 0) continue;
      throw problem;
    }
  }

  /** §3: POST JSON with a token and a proof; retry once on a nonce, once on a stale token. */
  async #post(path, body, scope) {
    let retriedNonce = false;
    let retriedToken = false;
    for (;;) {
      const token = await this.accessToken(scope);
      const response = await this.#fetch(path, {
        method: 'POST',
        headers: {
          authorization: `DPoP ${token}`,
          dpop: await this.#proof('POST', this.issuer + path, token),
          'content-type': 'application/json',
        },
        body: JSON.stringify(body),
      });
      if (response.ok) return response;
      const challenge = response.headers.get('www-authenticate') ?? '';
      if (response.status === 401 && /error="use_dpop_nonce"/.test(challenge) && !retriedNonce) {
        retriedNonce = true;
        continue;
      }
      if (response.status === 401 && /error="invalid_token"/.test(challenge) && !retriedToken) {
        retriedToken = true;
        this.tokens.delete(scope); // revoked or expired early: get a new one once
        continue;
      }
      throw await this.#problem(response, 'query');
    }
  }

  /**
   * §3: the record of `subject` in data item `item`, for `purpose`.
   * Returns {item, version, record, receipt, deprecation}; throws Problem or TransportError.
   */
  async queryRecord(item, subject, purpose, version) {
    const body = { subject, purpose };
    if (version !== undefined) body.version = version;
    const path = `/v1/items/${encodeURIComponent(item)}/records/query`;
    const response = await this.#post(path, body, `read:${item}`);
    const answer = await this.#json(response);
    if (!commitmentOpens(answer.record, answer.receipt)) {
      throw new VerificationError('the receipt commitment does not open on the record');
    }
    return { ...answer, deprecation: response.headers.get('deprecation') ?? undefined };
  }
}
