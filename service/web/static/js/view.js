// What the three form views (function lab, optimizer paths, likelihood) share: a form whose
// submit runs the view, a first run when the view is first shown, and a busy state while the
// service computes.

export class FormView {
  constructor(root) {
    this.root = root;
    this.form = root.querySelector("form");
    this.problem = root.querySelector(".problem-box");
    this.ran = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
  }

  show() {
    if (!this.ran) this.run();
  }

  hide() {}

  /** Runs the view's computation (overridden); `this.ran` records that it has run once. */
  async run() {
    this.ran = true;
  }

  /** Awaits `work()` with the submit button disabled and the view marked busy. */
  async busy(work) {
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    this.root.classList.add("busy");
    try {
      return await work();
    } finally {
      button.disabled = false;
      this.root.classList.remove("busy");
    }
  }
}
