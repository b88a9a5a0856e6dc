"""The staff upload form."""

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat


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

    def clean_file(self):  # type: ignore[no-untyped-def]
        upload = self.cleaned_data["file"]
        if upload.size > settings.AUDIT_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.AUDIT_MAX_UPLOAD_BYTES)}. Import it with "
                "`manage.py import_transcripts` instead."
            )
        return upload
