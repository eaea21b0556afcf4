import type { AdminEvent } from '../../core/events.js';
import type { IssuedAccessToken } from '../issue.js';

/** What a grant hands back to the token endpoint: the token and whom it was issued to (for audit). */
export interface GrantResult {
  issued: IssuedAccessToken;
  who: AdminEvent['who'];
}
