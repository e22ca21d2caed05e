// Boot: the key prompt, then the router renders the view the URL names.

import { installKeyPrompt } from './key.js';
import { start } from './router.js';

installKeyPrompt();
start();
