// A real OAuth 2 / OpenID Connect provider for the auth interop tests: oauth2-mock-server
// (pinned in package.json) on a free loopback port, with an RS256 key. Prints the issuer URL,
// then serves until killed.
// - Client credentials and password grants (tokens sent straight to /mcp): the token carries
//   the audience in AUDIENCE, `sub` (the password grant's username, else the client id), and
//   the space-separated `roles` of the token request.
// - Authorization code and refresh grants (the gateway's OAuth façade logging a user in):
//   both the access token and the ID token name the user LOGIN_SUBJECT with the roles in
//   LOGIN_ROLES (space-separated) and the tenant LOGIN_TENANT; the access token's audience is
//   AUDIENCE, the ID token's stays the client id (as OIDC requires).
// - REFUSE_REFRESH_FILE: see below (a test disables the account by creating the file).
const { OAuth2Server } = await import(process.env.OAUTH2_MOCK_SERVER);
const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
server.service.on("beforeTokenSigning", (token, req) => {
  const body = req.body ?? {};
  const login = body.grant_type === "authorization_code" || body.grant_type === "refresh_token";
  const accessToken = "scope" in token.payload; // the ID token carries no scope
  if (login) {
    token.payload.sub = process.env.LOGIN_SUBJECT ?? "alice";
    token.payload.roles = (process.env.LOGIN_ROLES ?? "").split(" ").filter(Boolean);
    if (process.env.LOGIN_TENANT) token.payload.tid = process.env.LOGIN_TENANT;
    if (accessToken && process.env.AUDIENCE) token.payload.aud = process.env.AUDIENCE;
    return;
  }
  token.payload.sub = body.username ?? body.client_id ?? "service-client";
  token.payload.aud = process.env.AUDIENCE;
  if (body.roles) token.payload.roles = String(body.roles).split(" ");
});
// While the file named by REFUSE_REFRESH_FILE exists, refresh grants are refused with
// invalid_grant, as a provider does for a disabled account or a revoked grant.
const { existsSync } = await import("node:fs");
server.service.on("beforeResponse", (response, req) => {
  const refusing = process.env.REFUSE_REFRESH_FILE && existsSync(process.env.REFUSE_REFRESH_FILE);
  if (refusing && req.body?.grant_type === "refresh_token") {
    response.statusCode = 400;
    response.body = { error: "invalid_grant", error_description: "the account is disabled" };
  }
});
await server.start(0, "127.0.0.1");
console.log(server.issuer.url);
