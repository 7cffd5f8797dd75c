// The console is built into dist/ and served by the API at /console (api/console.py).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  // Preact's automatic JSX runtime (no React, no plugin: Vite's own transform does it).
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 300 },
});
