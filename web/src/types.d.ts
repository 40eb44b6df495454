// highlight.js types its full bundle only; its core module has the same API.
declare module "highlight.js/lib/core" {
  import hljs from "highlight.js";
  export default hljs;
}
