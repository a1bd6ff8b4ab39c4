// The start page only needs the key form (the key then serves every page of this tab).
import { keyPanel } from "./keypanel.js";

keyPanel(() => {});
