// Join tokens from the control plane's admin API (used by `portcullis join-token create`, by the
// demo, and as a development convenience by a data plane started next to its control plane).
import { AdminClient } from './admin-client.js';

export { readAdminToken } from './admin-client.js';

export async function createJoinToken(controlUrl: string, caPem: string, adminToken: string, spiffeId: string): Promise<string> {
  const client = new AdminClient(controlUrl, caPem, adminToken);
  try {
    return (await client.call<{ token: string }>('POST', '/v1/admin/join-tokens', { spiffeId })).token;
  } finally {
    await client.close();
  }
}
