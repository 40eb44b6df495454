/** Registers the account and administration pages' strings (imported by those pages only). */
import { addMessages } from "./index";
import { pagesEn } from "./pages-en";
import { pagesZhCN } from "./pages-zh-CN";

addMessages("en", pagesEn);
addMessages("zh-CN", pagesZhCN);
