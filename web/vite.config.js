import { defineConfig } from 'vite';

// Relative asset URLs, so web/dist works from any path (the local server's `/`,
// or a sub-path of a static host). The Web Worker is an ES module, like the page.
export default defineConfig({
  base: './',
  worker: { format: 'es' },
  build: { target: 'es2022', chunkSizeWarningLimit: 1024 },
});
