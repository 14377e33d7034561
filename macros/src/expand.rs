//! Code generation for `#[kafka_handler]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, ItemFn, Pat};

use crate::args::{Errors, HandlerArgs, RawArgs};

/// Expands the attribute. On any error the user's function is still emitted
/// unchanged beside the errors, so the rest of the crate keeps compiling and
/// the IDE keeps working.
pub(crate) fn kafka_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error =
                syn::Error::new_spanned(&item, "#[kafka_handler] applies to a `fn` or `async fn`");
            return token_stream_with_error(item, error);
        }
    };
    let args = syn::parse2::<RawArgs>(args).and_then(RawArgs::check);
    let signature = check_signature(&function);
    match (args, signature) {
        (Ok(args), Ok(())) => generate(&args, &function),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            token_stream_with_error(item, error)
        }
        (Err(error), _) | (_, Err(error)) => token_stream_with_error(item, error),
    }
}

fn token_stream_with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

/// Rejects what the runtime cannot drive, each error on its own token.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let mut errors = Errors::default();
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "#[kafka_handler] cannot call an `unsafe fn`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[kafka_handler] functions use the Rust ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "#[kafka_handler] functions cannot be variadic",
        ));
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => errors.push(syn::Error::new_spanned(
                param,
                "#[kafka_handler] functions cannot be generic over types or consts: \
                 the runtime has to pick one concrete function to call per record",
            )),
        }
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "#[kafka_handler] functions cannot have a `where` clause",
        ));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "#[kafka_handler] functions cannot take `self`: annotate a free function \
                 and keep shared state in a `static` or behind an `Arc` it can reach",
            )),
            FnArg::Typed(arg) => {
                match &*arg.pat {
                    Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {}
                    Pat::Wild(_) => {}
                    pattern => errors.push(syn::Error::new_spanned(
                        pattern,
                        "#[kafka_handler] arguments must be plain names (`order: Json<Order>`); \
                         destructure inside the function",
                    )),
                }
                if let syn::Type::ImplTrait(impl_trait) = &*arg.ty {
                    errors.push(syn::Error::new_spanned(
                        impl_trait,
                        "#[kafka_handler] arguments cannot be `impl Trait`: name a concrete \
                         type that implements `FromRecord`",
                    ));
                }
            }
        }
    }
    errors.finish()
}

fn generate(args: &HandlerArgs, function: &ItemFn) -> TokenStream {
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kafka_handler));
    let private = quote!(#krate::__private);
    let vis = &function.vis;
    let name = &function.sig.ident;
    let topics = &args.topics;
    let group = &args.group;

    let arg_names: Vec<_> = (0..function.sig.inputs.len())
        .map(|i| format_ident!("__kh_arg{}", i))
        .collect();
    // Each extraction is spanned on the argument's type, so a type that is
    // not an extractor is reported on that argument.
    let extractions = function
        .sig
        .inputs
        .iter()
        .zip(&arg_names)
        .map(|(input, arg_name)| {
            let FnArg::Typed(arg) = input else {
                unreachable!("receivers are rejected before generation")
            };
            let ty = &arg.ty;
            quote_spanned! {ty.span()=>
                let #arg_name = <#ty as #private::FromRecord<'_>>::from_record(__kh_record)?;
            }
        });
    let output_span = match &function.sig.output {
        syn::ReturnType::Default => name.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let call = if function.sig.asyncness.is_some() {
        quote!(#name(#(#arg_names),*).await)
    } else {
        quote!(#name(#(#arg_names),*))
    };
    let into_outcome = quote_spanned! {output_span=>
        #private::IntoOutcome::into_outcome(#call)
    };

    let constructor = if function.sig.asyncness.is_some() {
        quote! {
            fn __kh_invoke<'r>(__kh_record: &'r #private::Record<'r>) -> #private::HandlerFuture<'r> {
                #private::Box::pin(async move {
                    #(#extractions)*
                    let __kh_outcome: #private::Outcome = #into_outcome;
                    __kh_outcome
                })
            }
            #private::Handler::asynchronous(__KH_NAME, [#(#topics),*], #group, __kh_invoke)
        }
    } else {
        quote! {
            fn __kh_invoke(__kh_record: &#private::Record<'_>) -> #private::Outcome {
                #(#extractions)*
                #into_outcome
            }
            #private::Handler::sync(__KH_NAME, [#(#topics),*], #group, __kh_invoke)
        }
    };
    let options = args.record_key.map(|record_key| {
        quote! {
            let __kh_handler = {
                let mut options = #private::HandlerOptions::default();
                options.record_key = #record_key;
                __kh_handler.with_options(options)
            };
        }
    });
    let doc = format!(
        "The `#[kafka_handler]` descriptor of [`{name}`]: collect it with `kafka_handler::handlers![{name}]`."
    );

    quote! {
        #function

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        impl #private::HandlerFactory for #name {
            fn handler() -> #private::Handler {
                const __KH_NAME: &str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name));
                let __kh_handler = { #constructor };
                #options
                __kh_handler
            }
        }
    }
}
