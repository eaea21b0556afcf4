// `portcullis user list | add | disable | enable | delete | passwd | totp-enroll | totp-confirm |
// totp-remove`: people who sign in, through the control plane's admin API. Passwords come from
// stdin or are generated and printed once; a TOTP secret is printed once, on stdout alone.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';
import type { UserSummary } from '../identity/users.js';
import { AdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string }

async function withAdmin<T>(o: Opts, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const config = loadConfig(o.config);
  const client = AdminClient.fromDataDir(config.control.url, o.dataDir ? resolve(o.dataDir) : config.control.dataDir);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The name as a path segment; the control plane checks it is a username. */
const userPath = (name: string, action = ''): string => `/v1/admin/users/${encodeURIComponent(name)}${action ? `/${action}` : ''}`;

/** The password from stdin (one line), or a generated one the caller prints once. */
function passwordFrom(o: { passwordStdin?: boolean }): { password: string; generated: boolean } {
  if (o.passwordStdin) return { password: readFileSync(0, 'utf8').replace(/\r?\n$/, ''), generated: false };
  return { password: randomBytes(18).toString('base64url'), generated: true };
}

const sessionsNote = (n: number): string => (n > 0 ? `; ${n} session(s) ended` : '');

/**
 * Adds the commands under `user`, creating it if the CLI has none yet; an `add` already there
 * (main.ts's) is kept as it is.
 */
export function registerUserCommands(cli: Command, defaultConfig: string): void {
  const user = cli.commands.find((c) => c.name() === 'user') ?? cli.command('user').description('people who sign in to get tokens');
  const has = (name: string): boolean => user.commands.some((c) => c.name() === name);
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  if (!has('add')) {
    common(user.command('add')).description('add a user; the password is read from stdin, or generated and printed once')
      .argument('<username>')
      .option('-r, --role <role...>', 'roles', [])
      .option('--password-stdin', 'read the password from standard input')
      .action(async (username: string, o: Opts & { role: string[]; passwordStdin?: boolean }) => {
        const { password, generated } = passwordFrom(o);
        await withAdmin(o, (c) => c.call('POST', '/v1/admin/users', { username, password, roles: o.role }));
        console.log(generated ? `added ${username}; password (shown once): ${password}` : `added ${username}`);
      });
  }

  common(user.command('list')).description('every user: roles, disabled or not, second factor')
    .action(async (o: Opts) => {
      const { users } = await withAdmin(o, (c) => c.call<{ users: UserSummary[] }>('GET', '/v1/admin/users'));
      if (users.length === 0) console.log('no users');
      for (const u of users) {
        console.log(`${u.username.padEnd(20)} ${(u.disabled ? 'disabled' : 'enabled').padEnd(8)} totp ${u.totp.padEnd(7)} roles ${u.roles.join(',') || '-'}`);
      }
    });

  common(user.command('disable')).description('refuse sign-in and new tokens; ends the user\'s sessions')
    .argument('<username>')
    .action(async (username: string, o: Opts) => {
      const r = await withAdmin(o, (c) => c.call<{ revokedSessions: number }>('POST', userPath(username, 'disable')));
      console.log(`disabled ${username}${sessionsNote(r.revokedSessions)}`);
    });

  common(user.command('enable')).description('allow a disabled user to sign in again')
    .argument('<username>')
    .action(async (username: string, o: Opts) => {
      await withAdmin(o, (c) => c.call('POST', userPath(username, 'enable')));
      console.log(`enabled ${username}`);
    });

  common(user.command('delete')).description('remove a user for good (and end their sessions)')
    .argument('<username>')
    .option('--yes', 'confirm: deleting cannot be undone')
    .action(async (username: string, o: Opts & { yes?: boolean }) => {
      if (!o.yes) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `deleting ${username} cannot be undone: add --yes (or use "portcullis user disable")`);
      const r = await withAdmin(o, (c) => c.call<{ revokedSessions: number }>('DELETE', userPath(username)));
      console.log(`deleted ${username}${sessionsNote(r.revokedSessions)}`);
    });

  common(user.command('passwd')).description('set a new password (stdin, or generated and printed once); ends the user\'s sessions')
    .argument('<username>')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (username: string, o: Opts & { passwordStdin?: boolean }) => {
      const { password, generated } = passwordFrom(o);
      const r = await withAdmin(o, (c) => c.call<{ revokedSessions: number }>('POST', userPath(username, 'password'), { password }));
      console.log(generated ? `new password for ${username} (shown once): ${password}${sessionsNote(r.revokedSessions)}` : `password of ${username} changed${sessionsNote(r.revokedSessions)}`);
    });

  common(user.command('totp-enroll')).description('new TOTP secret for an authenticator app, printed once; the user\'s first valid code confirms it')
    .argument('<username>')
    .action(async (username: string, o: Opts) => {
      const r = await withAdmin(o, (c) => c.call<{ secretBase32: string; otpauthUrl: string }>('POST', userPath(username, 'totp')));
      console.error(`TOTP enrolment for ${username}. The secret below is shown ONCE: give it to the user only (as text, or the otpauth URL as a QR code).`);
      console.error(`It becomes active at their first sign-in with a valid code, or with: portcullis user totp-confirm ${username} <code>`);
      console.log(r.secretBase32);
      console.log(r.otpauthUrl);
    });

  common(user.command('totp-confirm')).description('activate a pending TOTP enrolment with a current code')
    .argument('<username>').argument('<code>', 'the code the authenticator app shows now')
    .action(async (username: string, code: string, o: Opts) => {
      await withAdmin(o, (c) => c.call('POST', userPath(username, 'totp/confirm'), { code }));
      console.log(`TOTP active for ${username}`);
    });

  common(user.command('totp-remove')).description('remove the second factor (a lost device); a privileged user cannot sign in until re-enrolled')
    .argument('<username>')
    .action(async (username: string, o: Opts) => {
      const r = await withAdmin(o, (c) => c.call<{ removed: boolean }>('DELETE', userPath(username, 'totp')));
      console.log(r.removed ? `TOTP removed for ${username}` : `${username} had no TOTP`);
    });
}
