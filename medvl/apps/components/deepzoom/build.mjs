// Bundles src/index.js with OpenSeadragon into build/viewer.js (one file, no runtime downloads).
import { build } from "esbuild";
import { copyFileSync } from "node:fs";

await build({
  entryPoints: ["src/index.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "eof",
  outfile: "build/viewer.js",
});
copyFileSync("node_modules/openseadragon/LICENSE.txt", "build/LICENSE-openseadragon.txt");
