// A real OpenID Provider for the sign-in tests: panva's certified `oidc-provider`, configured
// from the JSON in the OIDC_PROVIDER_CONFIG environment variable:
//
//   { "port": 5000, "issuer": "http://127.0.0.1:5000",
//     "clients": [{ "client_id": "…", "client_secret": "…", "redirect_uris": ["…"] }],
//     "accounts": { "alice": { "email": "…", "email_verified": true, "name": "…",
//                              "preferred_username": "alice" } } }
//
// Sign-in uses the provider's development interactions: the login form takes an account id
// (a key of "accounts") and any password, then a consent form. PKCE (S256) is required.
// Prints "ready <issuer>" on stdout once it listens.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.env.OIDC_PROVIDER_CONFIG || '{}');
const root = path.resolve(process.env.OIDC_PROVIDER_MODULES || '.cache/oidc-provider');
const require = createRequire(path.join(root, 'package.json'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };
const accounts = config.accounts || {};

const provider = new Provider(config.issuer, {
  clients: (config.clients || []).map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { methods: ['S256'], required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...accounts[id] };
      },
    };
  },
});
// The tests talk plain HTTP on loopback.
provider.proxy = true;

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
provider.on('server_error', (ctx, error) => process.stderr.write(`server_error: ${error.stack}\n`));
