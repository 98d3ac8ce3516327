// A real MCP OAuth client for the authorization-server interop test: the TypeScript SDK
// (@modelcontextprotocol/sdk, installed under .peers as a dependency of the pinned peers; its
// package directory in MCP_SDK_DIR, default ../.peers/node/node_modules/@modelcontextprotocol/sdk)
// connects to <GATEWAY_URLS[0]>/mcp through its own OAuthClientProvider flow: 401 → RFC 9728/8414
// discovery → client registration (CLIENT_MODE=dcr) or a URL client id (CLIENT_MODE=cimd with
// CLIENT_METADATA_URL; the SDK itself uses it only for https URLs when the metadata says
// client_id_metadata_document_supported, an http URL is handed to it as a known client id)
// → PKCE authorization. redirectToAuthorization plays the browser headlessly: GET the consent
// page, POST "approve" with its csrf cookie, follow the upstream IdP's redirect to /oauth/callback
// and read code/state/iss off the final redirect to REDIRECT_URI (nothing listens there). Then
// finishAuth(code), reconnect, tools/list, tools/call TOOL_NAME with TOOL_ARGS (JSON), a forced
// refresh (the stored access token is spoiled; the SDK refreshes on the 401 and retries) and the
// call again. GATEWAY_URLS holds 1 or 2 bases of instances sharing state, the first being the
// advertised public URL; with 2, requests to the first are spread by step: well-known, authorize,
// callback → 0; register, consent, token → 1; /mcp alternates. Each is logged on stderr.
// Prints one JSON line on stdout and exits 0; any failure is explained on stderr, exit 1.
import path from "node:path";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";

const log = (...args) => console.error("oauth_client:", ...args);
console.log = console.error; // stdout carries the one result line only
const fail = (message) => { throw new Error(message); };
const need = (name) => process.env[name] || fail(`${name} is not set`);
const timeoutMs = Number(process.env.TIMEOUT_MS ?? 60000);
setTimeout(() => { log(`FAILED: no result within ${timeoutMs} ms`); process.exit(1); }, timeoutMs).unref();

const sdkDir = process.env.MCP_SDK_DIR
  ?? path.join(import.meta.dirname, "../.peers/node/node_modules/@modelcontextprotocol/sdk");
const sdk = (file) => import(sdkDir.startsWith("file:") ? `${sdkDir.replace(/\/$/, "")}/${file}`
  : pathToFileURL(path.join(sdkDir, file)).href);
const { Client } = await sdk("dist/esm/client/index.js");
const { StreamableHTTPClientTransport } = await sdk("dist/esm/client/streamableHttp.js");
const { UnauthorizedError } = await sdk("dist/esm/client/auth.js");

const bases = need("GATEWAY_URLS").split(",").map((u) => u.trim().replace(/\/+$/, "")).filter(Boolean);
const PUBLIC = bases[0];
const publicPath = new URL(PUBLIC).pathname.replace(/\/$/, "");
const mode = process.env.CLIENT_MODE ?? "dcr";
if (mode !== "dcr" && mode !== "cimd") fail(`CLIENT_MODE must be dcr or cimd, not ${mode}`);
const metadataUrl = mode === "cimd" ? need("CLIENT_METADATA_URL") : undefined;
const cimdBySdk = metadataUrl?.startsWith("https:") ?? false; // the SDK refuses non-https ones
const redirectUri = need("REDIRECT_URI");
const toolName = need("TOOL_NAME");
const toolArgs = JSON.parse(process.env.TOOL_ARGS || "{}");

// --- fetch spreading the public URL's requests over the instances --------------------------
const used = new Set();
const grants = []; // grant_type of every token request, in order
let mcpTurn = 0;
function instanceFor(rel) {
  if (bases.length < 2) return 0;
  if (/^\/oauth\/(consent|token|register)/.test(rel)) return 1;
  if (rel.startsWith("/mcp")) return mcpTurn++ % 2;
  return 0; // /.well-known/*, /oauth/authorize, /oauth/callback
}
async function gatewayFetch(input, init = {}) {
  const url = String(input instanceof Request ? input.url : input);
  if (!(url === PUBLIC || url.startsWith(`${PUBLIC}/`) || url.startsWith(`${PUBLIC}?`))) {
    return fetch(input, init); // the upstream IdP, or anything else
  }
  const rel = new URL(url).pathname.slice(publicPath.length);
  const i = instanceFor(rel);
  used.add(i);
  log(`${(init.method ?? "GET").toUpperCase()} ${rel} -> instance ${i}`);
  if (rel.startsWith("/oauth/token") && init.body instanceof URLSearchParams) {
    grants.push(init.body.get("grant_type"));
  }
  return fetch(bases[i] + url.slice(PUBLIC.length), init);
}

// --- the headless browser: consent page, IdP round trip, callback ---------------------------
const jar = new Map(); // cookies the gateway set, sent back to it as a browser would
async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  const toGateway = url.startsWith(`${PUBLIC}/`);
  if (toGateway && jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
  const res = await gatewayFetch(url, { ...init, headers, redirect: "manual" });
  if (toGateway) {
    for (const c of res.headers.getSetCookie()) {
      const pair = c.split(";")[0];
      jar.set(pair.slice(0, pair.indexOf("=")).trim(), pair.slice(pair.indexOf("=") + 1).trim());
    }
  }
  return res;
}
async function redirectTarget(res, from, step) {
  const location = res.headers.get("location");
  if (res.status < 301 || res.status > 308 || !location) {
    fail(`${step}: expected a redirect, got HTTP ${res.status}: ${(await res.text()).slice(0, 400)}`);
  }
  await res.body?.cancel();
  return new URL(location, from).href;
}
const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
const unescapeHtml = (s) => s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) =>
  e[0] === "#" ? String.fromCodePoint(Number(e[1].toLowerCase() === "x" ? `0${e.slice(1)}` : e.slice(1)))
    : ENTITIES[e.toLowerCase()] ?? m);
const attributes = (tag) => Object.fromEntries([...tag.matchAll(
  /([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/g)]
  .map((m) => [m[1].toLowerCase(), unescapeHtml(m[2] ?? m[3] ?? m[4])]));

let sentState;
let authCode;
async function approveInBrowser(authorizationUrl) {
  const state = authorizationUrl.searchParams.get("state");
  if (!state || state !== sentState) fail(`the SDK's authorization URL lacks our state: ${authorizationUrl}`);
  let res = await browse(authorizationUrl.href);
  const html = await res.text();
  if (res.status !== 200) fail(`authorize: HTTP ${res.status}: ${html.slice(0, 400)}`);
  const form = [...html.matchAll(/<form\b[^>]*>/gi)].map((m) => attributes(m[0]))
    .find((a) => a.method?.toLowerCase() === "post" && a.action);
  if (!form) fail(`authorize: no <form method="post" action=...> in the consent page: ${html.slice(0, 400)}`);
  const fields = [...html.matchAll(/<(?:input|button)\b[^>]*>/gi)].map((m) => attributes(m[0]));
  const hidden = (name) => fields.find((a) => a.name === name && a.type === "hidden")?.value
    ?? fail(`authorize: the consent form has no hidden input ${name}`);
  const decisions = fields.filter((a) => a.name === "decision").map((a) => a.value);
  if (!decisions.includes("approve") || !decisions.includes("deny")) {
    fail(`authorize: want decision buttons approve and deny, got ${JSON.stringify(decisions)}`);
  }
  // One anti-forgery cookie per consent form: mcpgw_csrf_<tag> (__Host- prefixed on https).
  const cookie = res.headers.getSetCookie().find((c) => /^(__Host-)?mcpgw_csrf_[0-9a-f]+=/.test(c));
  if (!cookie || !/;\s*httponly/i.test(cookie) || !/;\s*samesite=strict/i.test(cookie)) {
    fail(`authorize: want an HttpOnly SameSite=Strict mcpgw_csrf_<tag> cookie, got ${cookie}`);
  }
  const action = new URL(form.action, authorizationUrl).href;
  res = await browse(action, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: new URL(PUBLIC).origin },
    body: new URLSearchParams({ request: hidden("request"), csrf: hidden("csrf"), decision: "approve" }),
  });
  if (res.status !== 303) fail(`consent: want 303, got HTTP ${res.status}: ${(await res.text()).slice(0, 400)}`);
  const upstream = await redirectTarget(res, action, "consent");
  const callback = await redirectTarget(await browse(upstream), upstream, "upstream IdP authorize");
  if (!callback.startsWith(`${PUBLIC}/oauth/callback`)) fail(`the upstream IdP redirected to ${callback}`);
  const final = new URL(await redirectTarget(await browse(callback), callback, "callback"));
  if (!final.href.startsWith(redirectUri)) fail(`callback redirected to ${final}, not to ${redirectUri}`);
  const q = final.searchParams;
  if (q.has("error")) fail(`authorization failed: ${q.get("error")}: ${q.get("error_description")}`);
  if (q.get("state") !== state) fail(`callback returned state ${q.get("state")}, the SDK sent ${state}`);
  if (q.get("iss")?.replace(/\/$/, "") !== PUBLIC) fail(`callback returned iss ${q.get("iss")}, want ${PUBLIC}`);
  authCode = q.get("code") || fail(`callback redirect carries no code: ${final}`);
}

// --- the SDK's OAuthClientProvider, all in memory -------------------------------------------
let clientInfo = metadataUrl && !cimdBySdk ? { client_id: metadataUrl } : undefined;
let tokens;
let verifier;
let redirects = 0;
const provider = {
  redirectUrl: redirectUri,
  clientMetadata: {
    client_name: "mcp-gateway interop: TypeScript SDK",
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: process.env.TOKEN_ENDPOINT_AUTH_METHOD || "none",
  },
  ...(cimdBySdk ? { clientMetadataUrl: metadataUrl } : {}),
  state: () => (sentState = randomBytes(16).toString("base64url")),
  clientInformation: () => clientInfo,
  saveClientInformation: (info) => { clientInfo = info; },
  tokens: () => tokens,
  saveTokens: (t) => { tokens = t; },
  saveCodeVerifier: (v) => { verifier = v; },
  codeVerifier: () => verifier,
  async redirectToAuthorization(url) {
    if (++redirects > 1) fail("the SDK started a new authorization where a refresh was expected");
    await approveInBrowser(url);
  },
};

// --- the flow --------------------------------------------------------------------------------
const mcpUrl = new URL(`${PUBLIC}/mcp`);
const open = () => new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: gatewayFetch });
const newClient = () => {
  const c = new Client({ name: "mcp-gateway-oauth-interop", version: "1.0.0" });
  c.onerror = (e) => log("transport error:", e?.message ?? e);
  return c;
};
const textOf = (result) => {
  if (result.isError) fail(`tools/call ${toolName} failed: ${JSON.stringify(result.content)}`);
  return result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
};

try {
  let transport = open();
  let client = newClient();
  try {
    await client.connect(transport);
    fail("the gateway let a client without a token in");
  } catch (e) {
    if (!(e instanceof UnauthorizedError || e?.constructor?.name === "UnauthorizedError")) throw e;
  }
  if (!authCode) fail("connect ended in UnauthorizedError without an authorization code");
  await transport.finishAuth(authCode); // code → tokens at /oauth/token, PKCE verifier included
  if (!tokens?.access_token) fail("finishAuth stored no tokens");
  if (metadataUrl && clientInfo?.client_id !== metadataUrl) {
    fail(`client id ${clientInfo?.client_id} is not the metadata document URL ${metadataUrl}`);
  }
  transport = open();
  client = newClient();
  await client.connect(transport);
  const { tools } = await client.listTools();
  const callText = textOf(await client.callTool({ name: toolName, arguments: toolArgs }));

  const first = tokens.refresh_token || fail("the token response carried no refresh_token");
  const firstAccess = tokens.access_token;
  tokens = { ...tokens, access_token: "invalid" }; // next request: 401 → refresh → retry
  const again = await client.listTools();
  if (!grants.includes("refresh_token")) fail("the SDK sent no refresh_token grant");
  if ([firstAccess, "invalid"].includes(tokens.access_token)) fail("the refresh brought no new access token");
  const second = tokens.refresh_token;
  if (second === first) fail("the refresh token was not rotated");
  if (again.tools.length !== tools.length) fail(`tools/list after refresh: ${again.tools.length} tools`);
  const callTextAfterRefresh = textOf(await client.callTool({ name: toolName, arguments: toolArgs }));
  await client.close().catch(() => {});

  const result = {
    client_id: clientInfo.client_id, client_mode: mode, cimd_by_sdk: cimdBySdk,
    tools: tools.length, tool_names: tools.map((t) => t.name),
    call_text: callText, call_text_after_refresh: callTextAfterRefresh,
    refreshed: true, first_refresh_token: first, second_refresh_token: second,
    access_token: tokens.access_token, grants, instances_used: [...used].sort(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
} catch (e) {
  log(`FAILED: ${e?.stack ?? e}`);
  process.exit(1);
}
