/**
 * <lt-shortcuts-dialog>: the keyboard shortcuts (a native modal <dialog>: focus trap and Esc
 * for free). `SHORTCUTS` is what <lt-app> handles; this dialog only lists them.
 */
import { html, type TemplateResult } from "lit";
import { type MessageKey, t } from "../i18n";
import { LightElement } from "./base";

/** "mod" is Ctrl, or ⌘ on Apple keyboards. */
type Key = "mod" | "Shift" | "Esc" | "Enter" | string;

interface Shortcut {
  label: MessageKey;
  /** Alternatives, each the keys pressed together. */
  combos: Key[][];
}

export const SHORTCUTS: readonly Shortcut[] = [
  { label: "shortcuts.newChat", combos: [["mod", "Shift", "O"]] },
  { label: "shortcuts.search", combos: [["mod", "K"]] },
  { label: "shortcuts.focusComposer", combos: [["Shift", "Esc"]] },
  { label: "shortcuts.stop", combos: [["Esc"]] },
  { label: "shortcuts.copyLast", combos: [["mod", "Shift", "C"]] },
  { label: "shortcuts.send", combos: [["Enter"]] },
  { label: "shortcuts.newLine", combos: [["Shift", "Enter"]] },
  { label: "shortcuts.help", combos: [["?"], ["mod", "/"]] },
];

const APPLE = /Mac|iPhone|iPad/.test(navigator.userAgent);

function keyLabel(key: Key): string {
  return key === "mod" ? (APPLE ? "⌘" : "Ctrl") : key;
}

export class ShortcutsDialog extends LightElement {
  /** Show the list (focus goes to Close). */
  open(): void {
    const dialog = this.querySelector("dialog");
    if (!dialog || dialog.open) return;
    dialog.showModal();
    dialog.querySelector<HTMLButtonElement>(".btn")?.focus();
  }

  protected override render(): TemplateResult {
    return html`<dialog class="shortcuts" aria-labelledby="shortcuts-title">
      <h2 id="shortcuts-title">${t("shortcuts.title")}</h2>
      <dl class="shortcut-list">
        ${SHORTCUTS.map(
          (shortcut) => html`<div class="shortcut">
            <dt>${t(shortcut.label)}</dt>
            <dd>
              ${shortcut.combos.map(
                (combo, index) => html`${index > 0 ? html`<span class="shortcut-or">${t("shortcuts.or")}</span>` : ""}<span
                    class="combo"
                    >${combo.map((key) => html`<kbd>${keyLabel(key)}</kbd>`)}</span
                  >`,
              )}
            </dd>
          </div>`,
        )}
      </dl>
      <form method="dialog" class="dialog-actions">
        <button type="submit" class="btn btn-primary">${t("common.close")}</button>
      </form>
    </dialog>`;
  }
}

customElements.define("lt-shortcuts-dialog", ShortcutsDialog);
