// Seeds a coordinator you run yourself, for work on the console:
//   node dev-seed.mjs http://127.0.0.1:7450 <key>
import { Client } from './lib/client.mjs';
import { seed } from './lib/seed.mjs';

const [base = 'http://127.0.0.1:7450', key = process.env.ORCHESTRATOR_API_KEY] = process.argv.slice(2);
const out = await seed(new Client(base, key));
console.log(JSON.stringify({ run: out.run.id, dead: out.deadJob.id, leased: out.leasedJob.id }, null, 2));
