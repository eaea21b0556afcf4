// `portcullis login | token | logout`: a person's session from the command line. `login` signs in
// (authorization code + PKCE with the password, the one-time code when the account has a second
// factor; or, with --device, RFC 8628 on another device's browser), keeps the tokens in a session
// file (mode 0600) and prints the access token; `token` prints a valid one, refreshed first when
// needed; `logout` revokes and deletes. Passwords, codes and refresh tokens are never printed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';
import { CLI_CLIENT_ID } from '../control/server.js';
import { loginWithDevice } from '../tokens/client/device-login.js';
import { loginWithPkce } from '../tokens/client/pkce-login.js';
import { defaultSessionFile, endSession, freshAccessToken, saveSession, sessionFromTokens } from '../tokens/client/session.js';

/** What the CLI asks for: a refresh token, so `portcullis token` keeps working after the access token expired. */
const CLI_SCOPE = 'offline_access';

interface Common { config: string; sessionFile?: string }

const SESSION_FILE_HELP = 'where the tokens are kept, mode 0600 (default: $PORTCULLIS_SESSION_FILE, else one file per control plane in ~/.config/portcullis/sessions/)';

function context(o: Common): { controlUrl: string; caPem: string; file: string } {
  const c = loadConfig(o.config);
  const caPem = readFileSync(join(c.control.dataDir, 'ca.pem'), 'utf8');
  return { controlUrl: c.control.url, caPem, file: o.sessionFile ?? defaultSessionFile(c.control.url) };
}

export function registerLoginCommands(cli: Command, defaultConfig: string): void {
  cli.command('login')
    .description('sign in as a user, keep the session (for `portcullis token`) and print an access token')
    .argument('[username]', 'who signs in (not with --device: there the person signs in on the verification page)')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--password-stdin', 'read the password from standard input (otherwise PORTCULLIS_PASSWORD); a second line is the one-time code, for accounts with a second factor')
    .option('--device', 'sign in with a browser elsewhere (RFC 8628 device flow), for machines without one: prints a URL and a code on stderr, then waits')
    .option('--session-file <file>', SESSION_FILE_HELP)
    .option('--no-session', 'keep nothing on disk: only print the access token')
    .addHelpText('after', `
The one-time code (TOTP) of an account with a second factor comes from PORTCULLIS_TOTP_CODE, the
second line of --password-stdin, or a prompt when standard input is a terminal.`)
    .action(async (username: string | undefined, o: Common & { passwordStdin?: boolean; device?: boolean; session: boolean }) => {
      const ctx = context(o);
      let tokens;
      if (o.device) {
        if (username !== undefined) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'with --device the person signs in on the verification page: give no username');
        tokens = await loginWithDevice({
          controlUrl: ctx.controlUrl, caPem: ctx.caPem, clientId: CLI_CLIENT_ID, scope: CLI_SCOPE,
          prompt: (p) => {
            console.error(`To sign in, open ${p.verificationUri} and enter the code ${p.userCode}`);
            if (p.verificationUriComplete) console.error(`(or open ${p.verificationUriComplete} and check that it shows that code)`);
            console.error(`Waiting for the sign-in (the code expires in ${Math.round(p.expiresIn / 60)} min)...`);
          },
        });
      } else {
        if (username === undefined) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'give a username, or --device to sign in with a browser elsewhere');
        const lines = o.passwordStdin ? readFileSync(0, 'utf8').split(/\r?\n/) : [];
        const password = o.passwordStdin ? lines[0] : process.env.PORTCULLIS_PASSWORD;
        if (!password) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'give the password on stdin (--password-stdin) or in PORTCULLIS_PASSWORD');
        const code = process.env.PORTCULLIS_TOTP_CODE || lines[1];
        const totpCode = code ? () => Promise.resolve(code) : process.stdin.isTTY && !o.passwordStdin ? promptCode : undefined;
        tokens = await loginWithPkce({ controlUrl: ctx.controlUrl, caPem: ctx.caPem, clientId: CLI_CLIENT_ID, username, password, scope: CLI_SCOPE, ...(totpCode ? { totpCode } : {}) });
      }
      if (o.session) saveSession(ctx.file, sessionFromTokens(ctx.controlUrl, CLI_CLIENT_ID, tokens, Date.now()));
      console.log(tokens.accessToken);
    });

  cli.command('token')
    .description('print a valid access token of the signed-in user, refreshed first when it expired or is about to (after `portcullis login`)')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--session-file <file>', SESSION_FILE_HELP)
    .action(async (o: Common) => {
      const ctx = context(o);
      console.log(await freshAccessToken({ file: ctx.file, controlUrl: ctx.controlUrl, caPem: ctx.caPem }));
    });

  cli.command('logout')
    .description('end the session: revoke its refresh token (with the access tokens it produced) and delete the session file')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--session-file <file>', SESSION_FILE_HELP)
    .action(async (o: Common) => {
      const ctx = context(o);
      console.error(await endSession({ file: ctx.file, controlUrl: ctx.controlUrl, caPem: ctx.caPem }) ? 'signed out' : 'not signed in');
    });
}

/** Asks on the terminal; the code is typed visibly (it is short-lived and works once). */
async function promptCode(): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question('One-time code: ');
  } finally {
    rl.close();
  }
}
