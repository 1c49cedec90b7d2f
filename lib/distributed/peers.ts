// Loaded first by scorefield/distributed: bullmq and ioredis are optional peer dependencies
// (lib/optional.ts); without them the subpath fails with ERR_SCOREFIELD_UNSUPPORTED, not
// MODULE_NOT_FOUND.
import { requirePeers } from '../optional';

requirePeers('bullmq', 'ioredis');
