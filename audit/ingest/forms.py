"""The staff upload form."""

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat

from audit.models import RUN_METADATA_MAX_LENGTH


class UploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL, plain or gzip-compressed (.jsonl, .jsonl.gz).")
    skip_invalid = forms.BooleanField(
        required=False,
        label="Skip invalid lines",
        help_text="Import the valid lines and keep each rejected line, verbatim, for download. "
        "Without it, one bad line refuses the whole file.",
    )
    required_reviews = forms.IntegerField(
        min_value=1,
        max_value=10,
        initial=1,
        label="Reviews per item (K)",
        help_text="Independent reviews each item needs; 2 or more for a calibration set.",
    )
    # CharField strips the value and refuses NUL; over the limit is a form error, never cut.
    model = forms.CharField(
        required=False,
        max_length=RUN_METADATA_MAX_LENGTH,
        label="Model",
        help_text="Optional: the model the run used. Exported as malt.model; empty means unknown.",
    )
    run_source = forms.CharField(
        required=False,
        max_length=RUN_METADATA_MAX_LENGTH,
        label="Run source",
        help_text="Optional: where the run comes from (a policy, an experiment). Exported as "
        "malt.run_source; empty means unknown.",
    )

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        # Every upload handler sets the size; None is only for a hand-built UploadedFile.
        size = upload.size or 0
        if size > settings.AUDIT_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(size)}; the limit is "
                f"{filesizeformat(settings.AUDIT_MAX_UPLOAD_BYTES)}. Import it with "
                "`manage.py import_transcripts` instead."
            )
        return upload
