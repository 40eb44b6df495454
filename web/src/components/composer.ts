/**
 * <lt-composer>: the message box. Enter sends, Shift+Enter adds a line (and Enter while an
 * input method is composing Chinese text does neither); the box grows with its text. While
 * an answer streams, the send button becomes Stop.
 *
 * Images come by the attach button, by pasting or by dropping them on the box; each is
 * uploaded at once (with its progress on its thumbnail) and sent by id with the message. A
 * model that cannot read images gets none: the attach button says why, and a pasted or
 * dropped image is refused with the reason above the box. Think and Search the web show
 * only for a model that can, remembered per model by the controller.
 */
import { html, nothing, type TemplateResult } from "lit";
import { describeProblem, formatBytes, hasKey, t } from "../i18n";
import { MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, UploadError, uploadAttachment } from "../protocol/attachments";
import type { WireAttachment } from "../protocol/types";
import { type ChatController, type Features, featuresOf, NO_CAPABILITIES } from "../state/chat";
import type { Problem } from "../state/types";
import { LightElement } from "./base";
import { autosize } from "./dom";
import { icons } from "./icons";

const MAX_HEIGHT_PX = 280;

/** An image in the box: uploading, uploaded (with its server record) or refused. */
interface PendingImage {
  key: number;
  name: string;
  /** A blob: URL of the file, for its thumbnail (revoked when it leaves the box). */
  preview: string;
  progress: number;
  status: "uploading" | "done" | "error";
  attachment: WireAttachment | null;
  problem: Problem | null;
  abort: AbortController;
}

/** The words for a refused upload: the server's code when we have words for it, else its status. */
function uploadProblem(error: unknown): Problem {
  const size = { size: formatBytes(MAX_ATTACHMENT_BYTES) };
  if (!(error instanceof UploadError)) return { code: "upload_failed", message: String(error) };
  const byStatus: Record<number, string> = { 413: "attachment_too_large", 415: "unsupported_media_type", 400: "invalid_image" };
  const code = hasKey(`problem.${error.code}`) ? error.code : (byStatus[error.status] ?? "upload_failed");
  return { code, message: error.message, details: size };
}

export class Composer extends LightElement {
  static override properties = {
    controller: { attribute: false },
    busy: { type: Boolean },
    connected: { type: Boolean },
    problem: { attribute: false },
    reason: { attribute: false },
    dismissible: { type: Boolean },
    features: { attribute: false },
    model: { attribute: false },
    empty: { state: true },
    images: { state: true },
    dragging: { state: true },
  };

  declare controller: ChatController;
  declare busy: boolean;
  declare connected: boolean;
  declare problem: Problem | null;
  /** Why the problem's model is unavailable, from the model list. */
  declare reason: string | null;
  /** A refused send can be dismissed; an unavailable model stays until another is chosen. */
  declare dismissible: boolean;
  /** What the chosen model can do (Think, Search the web, images) and what was chosen. */
  declare features: Features;
  declare model: string | null;
  declare empty: boolean;
  declare images: PendingImage[];
  declare dragging: boolean;
  #nextKey = 1;

  constructor() {
    super();
    this.busy = false;
    this.connected = false;
    this.problem = null;
    this.reason = null;
    this.dismissible = true;
    this.features = featuresOf(NO_CAPABILITIES, undefined);
    this.model = null;
    this.empty = true;
    this.images = [];
    this.dragging = false;
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    for (const image of this.images) this.#discard(image);
    this.images = [];
  }

  get input(): HTMLTextAreaElement | null {
    return this.querySelector("textarea");
  }

  /** Put text in the box (an example prompt, a refused message given back). */
  fill(text: string): void {
    const input = this.input;
    if (!input) return;
    input.value = text;
    this.empty = text.trim() === "";
    autosize(input, MAX_HEIGHT_PX);
    input.focus();
  }

  override focus(): void {
    this.input?.focus();
  }

  protected override render(): TemplateResult {
    const ready = this.images.every((image) => image.status === "done");
    const nothingToSend = this.empty && this.images.length === 0;
    return html`${this.#problem()}
      <form
        class="composer ${this.dragging ? "dragging" : ""}"
        @submit=${this.#submit}
        @dragover=${this.#onDragOver}
        @dragleave=${this.#onDragLeave}
        @drop=${this.#onDrop}
      >
        ${this.dragging ? html`<div class="drop-hint" aria-hidden="true">${t("composer.dropHere")}</div>` : nothing}
        ${this.#thumbnails()}
        <label class="visually-hidden" for="composer-input">${t("composer.label")}</label>
        <textarea
          id="composer-input"
          rows="1"
          placeholder=${t("composer.placeholder")}
          enterkeyhint="send"
          @input=${this.#onInput}
          @keydown=${this.#onKeydown}
          @paste=${this.#onPaste}
        ></textarea>
        <div class="composer-tools">
          ${this.#attachButton()} ${this.#toggles()}
          <span class="composer-spacer"></span>
          ${this.busy
            ? html`<button type="button" class="send-btn stop" data-action="stop" aria-label=${t("composer.stop")} title=${t("composer.stop")} @click=${() => this.controller.stop()}>
                ${icons.stop()}
              </button>`
            : html`<button
                type="submit"
                class="send-btn"
                data-action="send"
                aria-label=${t("composer.send")}
                title=${t("composer.send")}
                ?disabled=${nothingToSend || !ready || !this.connected}
              >
                ${icons.send()}
              </button>`}
        </div>
      </form>
      <p class="composer-hint">${t("composer.hint")}</p>`;
  }

  #attachButton(): TemplateResult {
    const vision = this.features.vision;
    const label = vision ? t("composer.attach") : t("composer.attachNoVision", { model: this.model ?? "" });
    // aria-disabled, not disabled: it stays focusable and its title says why to everyone.
    return html`<input
        class="visually-hidden"
        type="file"
        accept="image/*"
        multiple
        tabindex="-1"
        aria-hidden="true"
        data-role="file-input"
        @change=${this.#onFilesChosen}
      /><button
        type="button"
        class="tool-btn"
        data-action="attach"
        aria-label=${t("composer.attach")}
        aria-disabled=${vision ? "false" : "true"}
        title=${label}
        @click=${this.#chooseFiles}
      >
        ${icons.image()}
      </button>`;
  }

  #toggles(): TemplateResult {
    const { thinking, search } = this.features;
    const model = this.model ?? "";
    const thinkTitle = !thinking.fixed
      ? t("composer.thinkHint")
      : thinking.on
        ? t("composer.thinkFixed", { model })
        : t("composer.thinkFixedOff", { model });
    return html`${thinking.shown
      ? html`<button
          type="button"
          class="toggle-btn"
          data-action="think"
          aria-pressed=${thinking.on ? "true" : "false"}
          aria-disabled=${thinking.fixed ? "true" : "false"}
          title=${thinkTitle}
          @click=${() => {
            // A model whose thinking is fixed shows its state; focusable, so its title is heard.
            if (!thinking.fixed) this.controller.setFeature("thinking", !thinking.on);
          }}
        >
          ${icons.bulb()}<span>${t("composer.think")}</span>
        </button>`
      : nothing}
    ${search.shown
      ? html`<button
          type="button"
          class="toggle-btn"
          data-action="search"
          aria-pressed=${search.on ? "true" : "false"}
          title=${t("composer.searchHint")}
          @click=${() => this.controller.setFeature("search", !search.on)}
        >
          ${icons.globe()}<span>${t("composer.search")}</span>
        </button>`
      : nothing}`;
  }

  #thumbnails(): TemplateResult | typeof nothing {
    if (this.images.length === 0) return nothing;
    return html`<ul class="composer-images" aria-label=${t("composer.images")}>
      ${this.images.map((image) => {
        const percent = Math.round(image.progress * 100);
        const state =
          image.status === "uploading"
            ? t("composer.uploading", { name: image.name, percent })
            : image.status === "error"
              ? t("composer.uploadFailed", { name: image.name })
              : image.name;
        return html`<li class="composer-image" data-status=${image.status} title=${state}>
          <img src=${image.preview} alt=${image.name} @error=${(event: Event) => ((event.target as HTMLImageElement).hidden = true)} />
          ${image.status === "uploading"
            ? html`<progress max="100" .value=${percent} aria-label=${state}></progress>`
            : nothing}
          ${image.status === "error" ? html`<span class="composer-image-error" role="img" aria-label=${state}>${icons.alert()}</span>` : nothing}
          <button
            type="button"
            class="composer-image-remove"
            data-action="remove-image"
            aria-label=${t("composer.removeImage", { name: image.name })}
            title=${t("composer.removeImage", { name: image.name })}
            @click=${() => this.#remove(image.key)}
          >
            ${icons.x()}
          </button>
        </li>`;
      })}
    </ul>`;
  }

  #problem(): TemplateResult | typeof nothing {
    const problem = this.problem;
    if (problem === null) return nothing;
    const { text, hint } = describeProblem(problem, this.reason);
    const aboutModel =
      problem.code === "provider_not_configured" ||
      problem.code === "model_not_found" ||
      problem.code === "model_not_allowed" ||
      problem.code === "unsupported_capability";
    return html`<div class="composer-problem" role="alert" data-code=${problem.code}>
      ${icons.alert()}
      <div class="composer-problem-text">
        <p class="problem-text">${text}</p>
        <p class="problem-hint">${hint}</p>
      </div>
      <div class="composer-problem-actions">
        ${aboutModel
          ? html`<button type="button" class="btn btn-small" @click=${this.#chooseModel}>${t("composer.chooseModel")}</button>`
          : nothing}
        ${this.dismissible
          ? html`<button type="button" class="icon-btn" aria-label=${t("common.dismiss")} title=${t("common.dismiss")} @click=${() => this.controller.dismissProblem()}>
              ${icons.x()}
            </button>`
          : nothing}
      </div>
    </div>`;
  }

  // -- images ---------------------------------------------------------------------------------

  /** Take these files into the box: images only, for a model that reads them, within the limits. */
  addFiles(files: readonly File[]): void {
    if (files.length === 0) return;
    const visionProblem = this.controller.visionProblem;
    if (visionProblem !== null) {
      this.controller.showProblem(visionProblem);
      return;
    }
    const images = files.filter((file) => file.type.startsWith("image/"));
    if (images.length < files.length) {
      this.controller.showProblem({ code: "unsupported_media_type", message: "" });
    }
    const room = MAX_ATTACHMENTS - this.images.length;
    if (images.length > room) {
      this.controller.showProblem({ code: "too_many_images", message: "", details: { count: MAX_ATTACHMENTS } });
    }
    for (const file of images.slice(0, Math.max(0, room))) this.#add(file);
  }

  #add(file: File): void {
    const image: PendingImage = {
      key: this.#nextKey++,
      name: file.name || "image",
      preview: URL.createObjectURL(file),
      progress: 0,
      status: "uploading",
      attachment: null,
      problem: null,
      abort: new AbortController(),
    };
    this.images = [...this.images, image];
    // The server's cap, checked here too so a too large file is refused before it is sent.
    if (file.size > MAX_ATTACHMENT_BYTES) {
      this.#failed(image.key, { code: "attachment_too_large", message: "", details: { size: formatBytes(MAX_ATTACHMENT_BYTES) } });
      return;
    }
    uploadAttachment(file, (progress) => this.#update(image.key, { progress }), image.abort.signal).then(
      (attachment) => this.#update(image.key, { status: "done", progress: 1, attachment }),
      (error: unknown) => {
        if (error instanceof UploadError && error.code === "aborted") return;
        this.#failed(image.key, uploadProblem(error));
      },
    );
  }

  #failed(key: number, problem: Problem): void {
    this.#update(key, { status: "error", problem });
    this.controller.showProblem(problem);
  }

  #update(key: number, change: Partial<PendingImage>): void {
    this.images = this.images.map((image) => (image.key === key ? { ...image, ...change } : image));
  }

  #remove(key: number): void {
    const image = this.images.find((item) => item.key === key);
    if (image === undefined) return;
    this.#discard(image);
    this.images = this.images.filter((item) => item.key !== key);
    if (this.images.every((item) => item.status !== "error") && this.#isImageProblem(this.problem)) {
      this.controller.dismissProblem();
    }
    this.input?.focus();
  }

  #discard(image: PendingImage): void {
    image.abort.abort();
    URL.revokeObjectURL(image.preview);
  }

  #isImageProblem(problem: Problem | null): boolean {
    const codes = ["attachment_too_large", "unsupported_media_type", "invalid_image", "attachments_busy", "upload_failed", "uploads_failed", "too_many_images"];
    return problem !== null && codes.includes(problem.code);
  }

  #chooseFiles = (): void => {
    const visionProblem = this.controller.visionProblem;
    if (visionProblem !== null) {
      this.controller.showProblem(visionProblem);
      return;
    }
    this.querySelector<HTMLInputElement>('[data-role="file-input"]')?.click();
  };

  #onFilesChosen = (event: Event): void => {
    const input = event.target as HTMLInputElement;
    this.addFiles([...(input.files ?? [])]);
    input.value = "";
  };

  #onPaste = (event: ClipboardEvent): void => {
    const data = event.clipboardData;
    const files = [...(data?.files ?? [])];
    if (files.length === 0) return;
    // An image copied with text (from a web page) keeps its text; a bare image is not pasted as text.
    if (!data?.types.includes("text/plain")) event.preventDefault();
    this.addFiles(files);
  };

  #onDragOver = (event: DragEvent): void => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    this.dragging = true;
  };

  #onDragLeave = (event: DragEvent): void => {
    const form = event.currentTarget as HTMLElement;
    if (!(event.relatedTarget instanceof Node) || !form.contains(event.relatedTarget)) this.dragging = false;
  };

  #onDrop = (event: DragEvent): void => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    this.dragging = false;
    this.addFiles([...event.dataTransfer.files]);
  };

  // -- sending --------------------------------------------------------------------------------

  #chooseModel = (): void => {
    this.dispatchEvent(new CustomEvent("choose-model", { bubbles: true }));
  };

  #onInput = (event: Event): void => {
    const input = event.target as HTMLTextAreaElement;
    this.empty = input.value.trim() === "";
    autosize(input, MAX_HEIGHT_PX);
  };

  #onKeydown = (event: KeyboardEvent): void => {
    // keyCode 229: some browsers report the IME's Enter this way instead of isComposing.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    // While an answer is being written (maybe by another tab), say so instead of nothing.
    if (this.busy) this.controller.explainBusy();
    else (event.target as HTMLTextAreaElement).form?.requestSubmit();
  };

  #submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const input = this.input;
    if (!input || this.busy) return;
    const text = input.value;
    const images = this.images;
    if (text.trim() === "" && images.length === 0) return;
    if (images.some((image) => image.status === "uploading")) {
      this.controller.showProblem({ code: "uploads_pending", message: "" });
      return;
    }
    if (images.some((image) => image.status === "error")) {
      this.controller.showProblem({ code: "uploads_failed", message: "" });
      return;
    }
    input.value = "";
    this.empty = true;
    this.images = [];
    autosize(input, MAX_HEIGHT_PX);
    const sent = await this.controller.send(
      text,
      images.map((image) => image.attachment!),
    );
    if (sent) {
      for (const image of images) URL.revokeObjectURL(image.preview);
      return;
    }
    // A refused message comes back to the box, unless the user already typed something new.
    if (input.value === "" && this.images.length === 0) {
      this.images = images;
      this.fill(text);
    } else {
      for (const image of images) URL.revokeObjectURL(image.preview);
    }
  };
}

customElements.define("lt-composer", Composer);
