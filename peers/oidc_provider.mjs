// A real OAuth 2 / OpenID Connect provider for the auth interop test: oauth2-mock-server
// (pinned in package.json) on a free loopback port, with an RS256 key. Tokens carry the
// audience in AUDIENCE, `sub` (the password grant's username, else the client id), and
// the space-separated `roles` of the token request. Prints the issuer URL, then serves
// until killed.
const { OAuth2Server } = await import(process.env.OAUTH2_MOCK_SERVER);
const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
server.service.on("beforeTokenSigning", (token, req) => {
  const body = req.body ?? {};
  token.payload.sub = body.username ?? body.client_id ?? "service-client";
  token.payload.aud = process.env.AUDIENCE;
  if (body.roles) token.payload.roles = String(body.roles).split(" ");
});
await server.start(0, "127.0.0.1");
console.log(server.issuer.url);
